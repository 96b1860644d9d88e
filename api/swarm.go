package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/docker/docker/errdefs"
)

// Swarm mode is not there yet (its own issue), so jevm answers as a dockerd
// that is not part of a swarm: 503 "This node is not part of a swarm" for
// everything that needs one (the swarm, nodes, services, tasks, secrets,
// configs, leave and unlock), which is what clients that clean up with
// `docker swarm leave --force` expect. Joining or creating a swarm is 501
// until Swarm mode lands.

var (
	errNotInSwarm   = errdefs.Unavailable(errors.New("This node is not part of a swarm"))
	errSwarmMissing = errdefs.NotImplemented(errors.New("jevm does not support Swarm mode yet"))
)

func notInSwarm(context.Context, http.ResponseWriter, *http.Request, map[string]string) error {
	return errNotInSwarm
}

func swarmUnsupported(context.Context, http.ResponseWriter, *http.Request, map[string]string) error {
	return errSwarmMissing
}

// swarmRoutes are added to the router by newRouter.
func (s *Server) swarmRoutes() []route {
	rs := []route{
		{http.MethodGet, "/swarm", notInSwarm},
		{http.MethodPost, "/swarm/init", swarmUnsupported},
		{http.MethodPost, "/swarm/join", swarmUnsupported},
		{http.MethodPost, "/swarm/leave", notInSwarm},
		{http.MethodPost, "/swarm/update", notInSwarm},
		{http.MethodGet, "/swarm/unlockkey", notInSwarm},
		{http.MethodPost, "/swarm/unlock", notInSwarm},
	}
	// The object areas, as dockerd routes them.
	for _, area := range []string{"/nodes", "/services", "/tasks", "/secrets", "/configs"} {
		rs = append(rs,
			route{http.MethodGet, area, notInSwarm},
			route{http.MethodGet, area + "/{id:.*}", notInSwarm},
			route{http.MethodDelete, area + "/{id:.*}", notInSwarm},
			route{http.MethodPost, area + "/{id:.*}/update", notInSwarm},
		)
	}
	rs = append(rs,
		route{http.MethodPost, "/services/create", notInSwarm},
		route{http.MethodGet, "/services/{id:.*}/logs", notInSwarm},
		route{http.MethodGet, "/tasks/{id:.*}/logs", notInSwarm},
		route{http.MethodPost, "/secrets/create", notInSwarm},
		route{http.MethodPost, "/configs/create", notInSwarm},
	)
	return rs
}
