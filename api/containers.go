package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	dtypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	timetypes "github.com/docker/docker/api/types/time"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/jevm/jevm/api/types/backend"
)

// containerRoutes are added to the router by newRouter: the fixed paths
// first, since {name:.*} also matches them. The exec and file routes under
// /containers/{name} are in execRoutes and archiveRoutes.
func (s *Server) containerRoutes() []route {
	return []route{
		{http.MethodGet, "/containers/json", s.getContainersJSON},
		{http.MethodPost, "/containers/create", s.postContainersCreate},
		{http.MethodPost, "/containers/prune", s.postContainersPrune},
		{http.MethodGet, "/containers/{name:.*}/json", s.getContainerInspect},
		{http.MethodGet, "/containers/{name:.*}/logs", s.getContainerLogs},
		{http.MethodPost, "/containers/{name:.*}/start", s.postContainerStart},
		{http.MethodPost, "/containers/{name:.*}/stop", s.postContainerStop},
		{http.MethodPost, "/containers/{name:.*}/restart", s.postContainerRestart},
		{http.MethodPost, "/containers/{name:.*}/kill", s.postContainerKill},
		{http.MethodPost, "/containers/{name:.*}/wait", s.postContainerWait},
		{http.MethodPost, "/containers/{name:.*}/attach", s.postContainerAttach},
		{http.MethodGet, "/containers/{name:.*}/attach/ws", s.getContainerAttachWS},
		{http.MethodPost, "/containers/{name:.*}/resize", s.postContainerResize},
		{http.MethodPost, "/containers/{name:.*}/rename", s.postContainerRename},
		{http.MethodPost, "/containers/{name:.*}/pause", s.postContainerPause},
		{http.MethodPost, "/containers/{name:.*}/unpause", s.postContainerUnpause},
		{http.MethodPost, "/containers/{name:.*}/update", withJSONBody(s.postContainerUpdate)},
		{http.MethodGet, "/containers/{name:.*}/top", s.getContainerTop},
		{http.MethodGet, "/containers/{name:.*}/stats", s.getContainerStats},
		{http.MethodDelete, "/containers/{name:.*}", s.deleteContainer},
	}
}

// Container names as dockerd accepts them.
const validContainerNameChars = `[a-zA-Z0-9][a-zA-Z0-9_.-]`

var validContainerName = regexp.MustCompile(`^/?` + validContainerNameChars + `+$`)

func checkContainerName(name string) error {
	if !validContainerName.MatchString(name) {
		return errdefs.InvalidParameter(fmt.Errorf("Invalid container name (%s), only %s are allowed", name, validContainerNameChars))
	}
	return nil
}

func parseFilters(r *http.Request) (filters.Args, error) {
	f, err := filters.FromJSON(r.Form.Get("filters"))
	if err != nil && !errdefs.IsInvalidParameter(err) {
		err = errdefs.InvalidParameter(err)
	}
	return f, err
}

func (s *Server) getContainersJSON(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	limit, _, err := intValue(r, "limit")
	if err != nil {
		return err
	}
	list, err := s.backend.ContainerList(ctx, container.ListOptions{
		All:     boolValue(r, "all"),
		Size:    boolValue(r, "size"),
		Since:   r.Form.Get("since"),
		Before:  r.Form.Get("before"),
		Limit:   limit,
		Filters: f,
	})
	if err != nil {
		return err
	}
	if list == nil {
		list = []container.Summary{}
	}
	if versions.LessThan(VersionFromContext(ctx), "1.46") {
		for i := range list {
			list[i].HostConfig.Annotations = nil // added to the list in API 1.46
		}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (s *Server) postContainersCreate(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	name := r.Form.Get("name")
	if name != "" {
		if err := checkContainerName(name); err != nil {
			return err
		}
	}
	var req container.CreateRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Config == nil {
		return errdefs.InvalidParameter(errors.New("config cannot be empty in order to create a container"))
	}
	hostCfg := req.HostConfig
	if hostCfg == nil {
		hostCfg = &container.HostConfig{}
	}
	netCfg := req.NetworkingConfig
	if netCfg == nil {
		netCfg = &network.NetworkingConfig{}
	}
	version := VersionFromContext(ctx)
	if versions.LessThan(version, "1.40") && hostCfg.IpcMode.IsEmpty() {
		// Clients before API 1.40 expect dockerd's old default IPC mode.
		hostCfg.IpcMode = container.IPCModeShareable
	}
	if versions.LessThan(version, "1.43") {
		hostCfg.Annotations = nil // added in API 1.43
	}
	if versions.LessThan(version, "1.48") {
		// Gateway priorities came with API 1.48; before, every endpoint
		// had the same (dockerd resets the field).
		for _, es := range netCfg.EndpointsConfig {
			if es != nil {
				es.GwPriority = 0
			}
		}
	}
	if versions.LessThan(version, "1.44") && len(netCfg.EndpointsConfig) > 1 {
		// Several networks at create came with API 1.44.
		l := make([]string, 0, len(netCfg.EndpointsConfig))
		for k := range netCfg.EndpointsConfig {
			l = append(l, k)
		}
		sort.Strings(l)
		return errdefs.InvalidParameter(fmt.Errorf("Container cannot be created with multiple network endpoints: %s", strings.Join(l, ", ")))
	}
	// The image must be of the platform asked for (API 1.41 and later);
	// the backend answers "not found" for an image of another platform.
	var platform *ocispec.Platform
	if v := r.Form.Get("platform"); v != "" && versions.GreaterThanOrEqualTo(version, "1.41") {
		p, err := platforms.Parse(v)
		if err != nil {
			return errdefs.InvalidParameter(err)
		}
		platform = &p
	}
	resp, err := s.backend.ContainerCreate(ctx, strings.TrimPrefix(name, "/"), req.Config, hostCfg, netCfg, platform)
	if err != nil {
		return err
	}
	if resp.Warnings == nil {
		resp.Warnings = []string{}
	}
	return writeJSON(w, http.StatusCreated, resp)
}

func (s *Server) getContainerInspect(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	c, err := s.backend.ContainerInspect(ctx, vars["name"], boolValue(r, "size"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

// checkEmptyBody rejects the host config that API < 1.24 accepted in the
// body of start.
func checkEmptyStartBody(r *http.Request) error {
	if r.Body == nil || r.ContentLength == 0 {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		return errdefs.InvalidParameter(err)
	}
	switch string(bytes.TrimSpace(b)) {
	case "", "null", "{}":
		return nil
	}
	return errdefs.InvalidParameter(errors.New("starting container with non-empty request body was deprecated since API v1.22 and removed in v1.24"))
}

func (s *Server) postContainerStart(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if err := checkEmptyStartBody(r); err != nil {
		return err
	}
	if id := r.Form.Get("checkpoint"); id != "" {
		if !s.opts.Experimental {
			return errdefs.InvalidParameter(errors.New("checkpoint is only supported in experimental mode"))
		}
		if err := s.backend.ContainerRestore(ctx, vars["name"], id, r.Form.Get("checkpoint-dir")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if err := s.backend.ContainerStart(ctx, vars["name"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func stopOptions(ctx context.Context, r *http.Request) (container.StopOptions, error) {
	var opts container.StopOptions
	if versions.GreaterThanOrEqualTo(VersionFromContext(ctx), "1.42") {
		opts.Signal = r.Form.Get("signal")
	}
	t, ok, err := intValue(r, "t")
	if err != nil {
		return opts, err
	}
	if ok {
		opts.Timeout = &t
	}
	return opts, nil
}

func (s *Server) postContainerStop(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	opts, err := stopOptions(ctx, r)
	if err != nil {
		return err
	}
	if err := s.backend.ContainerStop(ctx, vars["name"], opts); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) postContainerRestart(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	opts, err := stopOptions(ctx, r)
	if err != nil {
		return err
	}
	if err := s.backend.ContainerRestart(ctx, vars["name"], opts); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) postContainerKill(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if err := s.backend.ContainerKill(ctx, vars["name"], r.Form.Get("signal")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) postContainerWait(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	version := VersionFromContext(ctx)
	legacy := versions.LessThan(version, "1.30")
	cond := container.WaitConditionNotRunning
	if !legacy {
		switch c := container.WaitCondition(r.Form.Get("condition")); c {
		case "":
		case container.WaitConditionNotRunning, container.WaitConditionNextExit, container.WaitConditionRemoved:
			cond = c
		default:
			return errdefs.InvalidParameter(fmt.Errorf("invalid condition: %q", string(c)))
		}
	}

	ctx, cancel := s.streamContext(ctx)
	defer cancel()
	waitC, err := s.backend.ContainerWait(ctx, vars["name"], cond)
	if err != nil {
		return err
	}

	w.Header().Set("Content-Type", "application/json")
	if !legacy {
		// The wait is registered: tell the client now, so that it can
		// go on and start the container (docker run relies on this).
		w.WriteHeader(http.StatusOK)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}

	var resp container.WaitResponse
	select {
	case res, ok := <-waitC:
		if !ok {
			// Nothing written: the client reads EOF and reports it.
			return nil
		}
		resp = res
	case <-ctx.Done():
		if r.Context().Err() != nil {
			return nil // client gone
		}
		resp = container.WaitResponse{StatusCode: -1, Error: &container.WaitExitError{Message: "daemon is shutting down"}}
	}
	return encodeJSON(w, resp)
}

// uint32Param reads a non-negative 32-bit query parameter with dockerd's
// errors: strconv.ErrSyntax for what is not a number, strconv.ErrRange
// for a negative or too large one (ParseUint alone calls "-1" a syntax
// error).
func uint32Param(r *http.Request, field string) (uint, error) {
	v, neg := strings.CutPrefix(r.Form.Get(field), "-")
	if v == "" || v[0] == '+' {
		return 0, strconv.ErrSyntax
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) {
			return 0, ne.Err
		}
		return 0, err
	}
	if neg {
		return 0, strconv.ErrRange
	}
	return uint(n), nil
}

// resizeParams reads the h and w query parameters of the resize routes.
func resizeParams(r *http.Request) (height, width uint, err error) {
	h, err := uint32Param(r, "h")
	if err != nil {
		return 0, 0, errdefs.InvalidParameter(fmt.Errorf("invalid resize height %q: %w", r.Form.Get("h"), err))
	}
	wd, err := uint32Param(r, "w")
	if err != nil {
		return 0, 0, errdefs.InvalidParameter(fmt.Errorf("invalid resize width %q: %w", r.Form.Get("w"), err))
	}
	return h, wd, nil
}

func (s *Server) postContainerResize(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	h, wd, err := resizeParams(r)
	if err != nil {
		return err
	}
	if err := s.backend.ContainerResize(ctx, vars["name"], h, wd); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) deleteContainer(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	err := s.backend.ContainerRemove(ctx, vars["name"], container.RemoveOptions{
		Force:         boolValue(r, "force"),
		RemoveVolumes: boolValue(r, "v"),
		RemoveLinks:   boolValue(r, "link"),
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) postContainerRename(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	newName := r.Form.Get("name")
	if newName == "" || vars["name"] == "" {
		return errdefs.InvalidParameter(errors.New("Neither old nor new names may be empty"))
	}
	if err := checkContainerName(newName); err != nil {
		return err
	}
	if err := s.backend.ContainerRename(ctx, vars["name"], strings.TrimPrefix(newName, "/")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) postContainersPrune(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	rep, err := s.backend.ContainersPrune(ctx, f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}

// normalizeLogTime validates a since/until value (unix seconds with an
// optional fraction, RFC3339 or a Go duration relative to now) and
// returns it as "<seconds>.<nanoseconds>" as understood by
// timetypes.ParseTimestamps.
func normalizeLogTime(name, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	ts, err := timetypes.GetTimestamp(v, time.Now())
	if err == nil {
		_, _, err = timetypes.ParseTimestamps(ts, 0)
	}
	if err != nil {
		return "", errdefs.InvalidParameter(fmt.Errorf("invalid value for %q: %w", name, err))
	}
	return ts, nil
}

func (s *Server) getContainerLogs(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	// Everything is validated before the 200 goes out: after that errors
	// can only be reported in the stream.
	opts, err := parseLogsOptions(r)
	if err != nil {
		return err
	}
	ctx, cancel := s.streamContext(ctx)
	defer cancel()
	msgs, tty, err := s.backend.ContainerLogs(ctx, vars["name"], opts)
	if err != nil {
		return err
	}
	writeLogStream(ctx, cancel, w, msgs, opts, tty)
	return nil
}

// parseLogsOptions reads and checks the query of a logs request.
func parseLogsOptions(r *http.Request) (container.LogsOptions, error) {
	opts := container.LogsOptions{
		ShowStdout: boolValue(r, "stdout"),
		ShowStderr: boolValue(r, "stderr"),
		Timestamps: boolValue(r, "timestamps"),
		Follow:     boolValue(r, "follow"),
		Tail:       r.Form.Get("tail"),
		Details:    boolValue(r, "details"),
	}
	if !opts.ShowStdout && !opts.ShowStderr {
		return opts, errdefs.InvalidParameter(errors.New("Bad parameters: you must choose at least one stream"))
	}
	var err error
	if opts.Since, err = normalizeLogTime("since", r.Form.Get("since")); err != nil {
		return opts, err
	}
	if opts.Until, err = normalizeLogTime("until", r.Form.Get("until")); err != nil {
		return opts, err
	}
	if opts.Tail != "" && opts.Tail != "all" {
		if n, err := strconv.Atoi(opts.Tail); err != nil || n < 0 {
			return opts, errdefs.InvalidParameter(fmt.Errorf("invalid value for \"tail\": %q: must be \"all\" or a non-negative integer", opts.Tail))
		}
	}

	return opts, nil
}

// writeLogStream answers 200 and writes msgs as opts ask: raw for a TTY
// (or an API before 1.42), else multiplexed; each line after its
// timestamp and its details (sorted key=value pairs, query-escaped, as
// dockerd writes them) when asked. It drains msgs; cancel stops the
// backend when the client has gone.
func writeLogStream(ctx context.Context, cancel context.CancelFunc, w http.ResponseWriter, msgs <-chan backend.LogMessage, opts container.LogsOptions, tty bool) {
	contentType := dtypes.MediaTypeRawStream
	if !tty && versions.GreaterThanOrEqualTo(VersionFromContext(ctx), "1.42") {
		contentType = dtypes.MediaTypeMultiplexedStream
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}

	var out, errOut, sysErr io.Writer = w, w, w
	if !tty {
		out = stdcopy.NewStdWriter(w, stdcopy.Stdout)
		errOut = stdcopy.NewStdWriter(w, stdcopy.Stderr)
		sysErr = stdcopy.NewStdWriter(w, stdcopy.Systemerr)
	}
	var writeErr error
	for msg := range msgs {
		if writeErr != nil {
			continue // client gone: drain until the backend notices
		}
		if msg.Err != nil {
			_, writeErr = fmt.Fprintf(sysErr, "Error grabbing logs: %v\n", msg.Err)
		} else {
			var dst io.Writer
			switch {
			case msg.Stream == "stderr" && opts.ShowStderr:
				dst = errOut
			case msg.Stream != "stderr" && opts.ShowStdout:
				dst = out
			default:
				continue
			}
			line := msg.Line
			if opts.Details {
				line = append(append(logDetails(msg.Attrs), ' '), line...)
			}
			if opts.Timestamps {
				ts := msg.Timestamp.UTC().Format(jsonmessage.RFC3339NanoFixed)
				line = append(append(make([]byte, 0, len(ts)+1+len(line)), ts+" "...), line...)
			}
			_, writeErr = dst.Write(line)
		}
		if writeErr != nil {
			cancel()
			continue
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

// logDetails formats a message's details as dockerd does.
func logDetails(attrs []backend.LogAttr) []byte {
	sorted := slices.Clone(attrs)
	slices.SortFunc(sorted, func(a, b backend.LogAttr) int { return strings.Compare(a.Key, b.Key) })
	var b []byte
	for i, a := range sorted {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, url.QueryEscape(a.Key)+"="+url.QueryEscape(a.Value)...)
	}
	return b
}
