package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/backend"
)

// Swarm mode (cluster/, issue 17): init, join, leave, inspect, update,
// the unlock key, the nodes (list, inspect, update, remove), services
// (create, list, inspect, update, rollback, remove, logs), tasks (list,
// inspect, logs), secrets, configs and unlocking are served. Outside a
// swarm they answer 503 "This node is not part of a swarm" as dockerd
// does, which is what clients that clean up with `docker swarm leave
// --force` expect.

// SwarmBackend serves /swarm and /nodes.
type SwarmBackend interface {
	SwarmInit(ctx context.Context, req swarm.InitRequest) (nodeID string, err error)
	SwarmJoin(ctx context.Context, req swarm.JoinRequest) error
	SwarmLeave(ctx context.Context, force bool) error
	SwarmUnlock(ctx context.Context, key string) error
	SwarmInspect(ctx context.Context) (swarm.Swarm, error)
	SwarmUnlockKey(ctx context.Context) (string, error)
	SwarmNodes(ctx context.Context, f filters.Args) ([]swarm.Node, error)
	SwarmNode(ctx context.Context, ref string) (swarm.Node, error)
	SwarmUpdate(ctx context.Context, spec swarm.Spec, opts backend.SwarmUpdateOptions) error
	SwarmNodeUpdate(ctx context.Context, ref string, version uint64, spec swarm.NodeSpec) error
	SwarmNodeRemove(ctx context.Context, ref string, force bool) error
	ServiceCreate(ctx context.Context, spec swarm.ServiceSpec) (swarm.ServiceCreateResponse, error)
	Services(ctx context.Context, f filters.Args, status bool) ([]swarm.Service, error)
	Service(ctx context.Context, ref string) (swarm.Service, error)
	ServiceUpdate(ctx context.Context, ref string, version uint64, spec swarm.ServiceSpec, rollback bool) (swarm.ServiceUpdateResponse, error)
	ServiceRemove(ctx context.Context, ref string) error
	Tasks(ctx context.Context, f filters.Args) ([]swarm.Task, error)
	Task(ctx context.Context, id string) (swarm.Task, error)
	// ServiceLogs streams the logs of services' and tasks' containers
	// wherever they run, each message with its node, service and task as
	// details; the channel is closed at the end.
	ServiceLogs(ctx context.Context, services, tasks []string, opts container.LogsOptions) (<-chan backend.LogMessage, error)
	SecretCreate(ctx context.Context, spec swarm.SecretSpec) (id string, err error)
	Secrets(ctx context.Context, f filters.Args) ([]swarm.Secret, error)
	Secret(ctx context.Context, ref string) (swarm.Secret, error)
	SecretUpdate(ctx context.Context, ref string, version uint64, spec swarm.SecretSpec) error
	SecretRemove(ctx context.Context, ref string) error
	ConfigCreate(ctx context.Context, spec swarm.ConfigSpec) (id string, err error)
	Configs(ctx context.Context, f filters.Args) ([]swarm.Config, error)
	Config(ctx context.Context, ref string) (swarm.Config, error)
	ConfigUpdate(ctx context.Context, ref string, version uint64, spec swarm.ConfigSpec) error
	ConfigRemove(ctx context.Context, ref string) error
	// SwarmStatus is the /_ping Swarm header: "inactive", "pending",
	// "active/manager" or "active/worker".
	SwarmStatus() string
}

var errNotInSwarm = errdefs.Unavailable(errors.New("This node is not part of a swarm"))

// inSwarm answers 503 "This node is not part of a swarm" outside one
// before h reads the request, as dockerd answers an empty create.
func (s *Server) inSwarm(h handlerFunc) handlerFunc {
	return func(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
		if s.backend.SwarmStatus() == string(swarm.LocalNodeStateInactive) {
			return errNotInSwarm
		}
		return h(ctx, w, r, vars)
	}
}

// swarmRoutes are added to the router by newRouter.
func (s *Server) swarmRoutes() []route {
	rs := []route{
		{http.MethodGet, "/swarm", s.getSwarm},
		{http.MethodPost, "/swarm/init", withJSONBody(s.postSwarmInit)},
		{http.MethodPost, "/swarm/join", withJSONBody(s.postSwarmJoin)},
		{http.MethodPost, "/swarm/leave", s.postSwarmLeave},
		{http.MethodPost, "/swarm/update", s.postSwarmUpdate},
		{http.MethodGet, "/swarm/unlockkey", s.getSwarmUnlockKey},
		{http.MethodPost, "/swarm/unlock", withJSONBody(s.postSwarmUnlock)},
		{http.MethodGet, "/nodes", s.getNodes},
		{http.MethodGet, "/nodes/{id:.*}", s.getNode},
		{http.MethodDelete, "/nodes/{id:.*}", s.deleteNode},
		{http.MethodPost, "/nodes/{id:.*}/update", s.postNodeUpdate},
	}
	rs = append(rs,
		// Logs before the object routes, whose {id:.*} would take them.
		route{http.MethodGet, "/services/{id:.*}/logs", s.getServiceLogs},
		route{http.MethodGet, "/tasks/{id:.*}/logs", s.getTaskLogs},
		route{http.MethodPost, "/services/create", s.postServiceCreate},
		route{http.MethodGet, "/services", s.getServices},
		route{http.MethodGet, "/services/{id:.*}", s.getService},
		route{http.MethodDelete, "/services/{id:.*}", s.deleteService},
		route{http.MethodPost, "/services/{id:.*}/update", s.postServiceUpdate},
		route{http.MethodGet, "/tasks", s.getTasks},
		route{http.MethodGet, "/tasks/{id:.*}", s.getTask},
	)
	b := s.backend
	rs = append(rs, objectRoutes(s, "secrets", swarmObjects[swarm.SecretSpec, swarm.Secret]{
		kind: "secret", create: b.SecretCreate, list: b.Secrets, get: b.Secret, update: b.SecretUpdate, remove: b.SecretRemove,
	})...)
	rs = append(rs, objectRoutes(s, "configs", swarmObjects[swarm.ConfigSpec, swarm.Config]{
		kind: "config", create: b.ConfigCreate, list: b.Configs, get: b.Config, update: b.ConfigUpdate, remove: b.ConfigRemove,
	})...)
	return rs
}

func (s *Server) getSwarm(ctx context.Context, w http.ResponseWriter, _ *http.Request, _ map[string]string) error {
	sw, err := s.backend.SwarmInspect(ctx)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, sw)
}

func (s *Server) postSwarmInit(ctx context.Context, w http.ResponseWriter, _ map[string]string, req *swarm.InitRequest) error {
	id, err := s.backend.SwarmInit(ctx, *req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, id)
}

func (s *Server) postSwarmJoin(ctx context.Context, w http.ResponseWriter, _ map[string]string, req *swarm.JoinRequest) error {
	if err := s.backend.SwarmJoin(ctx, *req); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) postSwarmUnlock(ctx context.Context, w http.ResponseWriter, _ map[string]string, req *swarm.UnlockRequest) error {
	if err := s.backend.SwarmUnlock(ctx, req.UnlockKey); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) postSwarmLeave(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	if err := r.ParseForm(); err != nil {
		return errdefs.InvalidParameter(err)
	}
	if err := s.backend.SwarmLeave(ctx, boolValue(r, "force")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) getSwarmUnlockKey(ctx context.Context, w http.ResponseWriter, _ *http.Request, _ map[string]string) error {
	key, err := s.backend.SwarmUnlockKey(ctx)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, swarm.UnlockKeyResponse{UnlockKey: key})
}

func (s *Server) getNodes(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	if err := r.ParseForm(); err != nil {
		return errdefs.InvalidParameter(err)
	}
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	nodes, err := s.backend.SwarmNodes(ctx, f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, nodes)
}

func (s *Server) getNode(ctx context.Context, w http.ResponseWriter, _ *http.Request, vars map[string]string) error {
	n, err := s.backend.SwarmNode(ctx, vars["id"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, n)
}

// versionQuery parses the version query parameter of an update.
func versionQuery(r *http.Request, what string) (uint64, error) {
	v := r.Form.Get("version")
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, errdefs.InvalidParameter(fmt.Errorf("invalid %s version '%s': %v", what, v, err))
	}
	return n, nil
}

func (s *Server) postSwarmUpdate(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	if s.backend.SwarmStatus() == string(swarm.LocalNodeStateInactive) {
		return errNotInSwarm // before the request is read, as dockerd
	}
	if err := r.ParseForm(); err != nil {
		return errdefs.InvalidParameter(err)
	}
	version, err := versionQuery(r, "swarm")
	if err != nil {
		return err
	}
	var spec swarm.Spec
	if err := readJSON(r, &spec); err != nil {
		return err
	}
	opts := backend.SwarmUpdateOptions{
		Version:                version,
		RotateWorkerToken:      boolValue(r, "rotateWorkerToken"),
		RotateManagerToken:     boolValue(r, "rotateManagerToken"),
		RotateManagerUnlockKey: boolValue(r, "rotateManagerUnlockKey"),
	}
	if err := s.backend.SwarmUpdate(ctx, spec, opts); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) postNodeUpdate(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if s.backend.SwarmStatus() == string(swarm.LocalNodeStateInactive) {
		return errNotInSwarm // before the request is read, as dockerd
	}
	if err := r.ParseForm(); err != nil {
		return errdefs.InvalidParameter(err)
	}
	version, err := versionQuery(r, "node")
	if err != nil {
		return err
	}
	var spec swarm.NodeSpec
	if err := readJSON(r, &spec); err != nil {
		return err
	}
	if err := s.backend.SwarmNodeUpdate(ctx, vars["id"], version, spec); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) deleteNode(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if err := r.ParseForm(); err != nil {
		return errdefs.InvalidParameter(err)
	}
	if err := s.backend.SwarmNodeRemove(ctx, vars["id"], boolValue(r, "force")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) postServiceCreate(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	if s.backend.SwarmStatus() == string(swarm.LocalNodeStateInactive) {
		return errNotInSwarm
	}
	var spec swarm.ServiceSpec
	if err := readJSON(r, &spec); err != nil {
		return err
	}
	resp, err := s.backend.ServiceCreate(ctx, spec)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, resp)
}

func (s *Server) getServices(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	if err := r.ParseForm(); err != nil {
		return errdefs.InvalidParameter(err)
	}
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	services, err := s.backend.Services(ctx, f, boolValue(r, "status"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, services)
}

func (s *Server) getService(ctx context.Context, w http.ResponseWriter, _ *http.Request, vars map[string]string) error {
	svc, err := s.backend.Service(ctx, vars["id"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, svc)
}

func (s *Server) deleteService(ctx context.Context, w http.ResponseWriter, _ *http.Request, vars map[string]string) error {
	if err := s.backend.ServiceRemove(ctx, vars["id"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) postServiceUpdate(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if s.backend.SwarmStatus() == string(swarm.LocalNodeStateInactive) {
		return errNotInSwarm
	}
	if err := r.ParseForm(); err != nil {
		return errdefs.InvalidParameter(err)
	}
	version, err := versionQuery(r, "service")
	if err != nil {
		return err
	}
	var spec swarm.ServiceSpec
	if err := readJSON(r, &spec); err != nil {
		return err
	}
	rollback := false
	switch v := r.Form.Get("rollback"); v {
	case "":
	case "previous":
		rollback = true
	default:
		return errdefs.InvalidParameter(fmt.Errorf("unrecognized rollback option %s", v))
	}
	resp, err := s.backend.ServiceUpdate(ctx, vars["id"], version, spec, rollback)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (s *Server) getTasks(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	if err := r.ParseForm(); err != nil {
		return errdefs.InvalidParameter(err)
	}
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	tasks, err := s.backend.Tasks(ctx, f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, tasks)
}

func (s *Server) getTask(ctx context.Context, w http.ResponseWriter, _ *http.Request, vars map[string]string) error {
	t, err := s.backend.Task(ctx, vars["id"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, t)
}

func (s *Server) getServiceLogs(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	return s.swarmLogs(ctx, w, r, []string{vars["id"]}, nil)
}

func (s *Server) getTaskLogs(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	return s.swarmLogs(ctx, w, r, nil, []string{vars["id"]})
}

// swarmLogs writes the logs of services and tasks as container logs are
// written: raw if their containers have a TTY, else multiplexed.
func (s *Server) swarmLogs(ctx context.Context, w http.ResponseWriter, r *http.Request, services, tasks []string) error {
	if err := r.ParseForm(); err != nil {
		return errdefs.InvalidParameter(err)
	}
	opts, err := parseLogsOptions(r)
	if err != nil {
		return err
	}
	tty := false
	for _, ref := range services {
		svc, err := s.backend.Service(ctx, ref)
		if err != nil {
			return err
		}
		if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil {
			tty = cs.TTY
		}
	}
	for _, ref := range tasks {
		t, err := s.backend.Task(ctx, ref)
		if err != nil {
			return err
		}
		if cs := t.Spec.ContainerSpec; cs != nil {
			tty = cs.TTY
		}
	}
	ctx, cancel := s.streamContext(ctx)
	defer cancel()
	msgs, err := s.backend.ServiceLogs(ctx, services, tasks, opts)
	if err != nil {
		return err
	}
	writeLogStream(ctx, cancel, w, msgs, opts, tty)
	return nil
}

// swarmObjects are the calls of a swarm object store that the API serves
// the same way for secrets and configs: spec S, object O.
type swarmObjects[S, O any] struct {
	kind   string // "secret" or "config", for messages
	create func(ctx context.Context, spec S) (string, error)
	list   func(ctx context.Context, f filters.Args) ([]O, error)
	get    func(ctx context.Context, ref string) (O, error)
	update func(ctx context.Context, ref string, version uint64, spec S) error
	remove func(ctx context.Context, ref string) error
}

// objectRoutes serves /AREA, /AREA/create, /AREA/{id} and
// /AREA/{id}/update as dockerd serves /secrets and /configs; create
// answers 201 {"ID"} (the shape of both create responses).
func objectRoutes[S, O any](s *Server, area string, o swarmObjects[S, O]) []route {
	list := func(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
		if err := r.ParseForm(); err != nil {
			return errdefs.InvalidParameter(err)
		}
		f, err := parseFilters(r)
		if err != nil {
			return err
		}
		objs, err := o.list(ctx, f)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, objs)
	}
	create := func(ctx context.Context, w http.ResponseWriter, _ map[string]string, spec *S) error {
		id, err := o.create(ctx, *spec)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusCreated, struct{ ID string }{id})
	}
	get := func(ctx context.Context, w http.ResponseWriter, _ *http.Request, vars map[string]string) error {
		obj, err := o.get(ctx, vars["id"])
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, obj)
	}
	remove := func(ctx context.Context, w http.ResponseWriter, _ *http.Request, vars map[string]string) error {
		if err := o.remove(ctx, vars["id"]); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	update := func(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
		if err := r.ParseForm(); err != nil {
			return errdefs.InvalidParameter(err)
		}
		version, err := versionQuery(r, o.kind)
		if err != nil {
			return err
		}
		var spec S
		if err := readJSON(r, &spec); err != nil {
			return err
		}
		if err := o.update(ctx, vars["id"], version, spec); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}
	return []route{
		{http.MethodGet, "/" + area, list},
		{http.MethodPost, "/" + area + "/create", s.inSwarm(withJSONBody(create))},
		{http.MethodGet, "/" + area + "/{id:.*}", get},
		{http.MethodDelete, "/" + area + "/{id:.*}", remove},
		{http.MethodPost, "/" + area + "/{id:.*}/update", update},
	}
}
