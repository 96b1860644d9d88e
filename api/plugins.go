package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/distribution/reference"
	"github.com/docker/docker/errdefs"
)

// jevm has no managed plugins (no volume, network, log or authz plugin
// runs inside a jeVM engine yet), so the plugin API answers as a dockerd
// with none installed: an empty list, "not found" for a named plugin. Tools
// list plugins before they start (moby's test harness, SDK clean-up code),
// so the list must answer rather than 404 on the route. Installing or
// creating one is refused with 501 until plugins are supported.

// pluginRoutes are added to the router by newRouter.
func (s *Server) pluginRoutes() []route {
	return []route{
		{http.MethodGet, "/plugins", s.getPluginsList},
		{http.MethodGet, "/plugins/privileges", pluginsUnsupported},
		{http.MethodPost, "/plugins/pull", pluginJSONBody(postPluginPull)},
		{http.MethodPost, "/plugins/create", pluginsUnsupported},
		{http.MethodGet, "/plugins/{name:.*}/json", pluginNotFound},
		{http.MethodPost, "/plugins/{name:.*}/enable", pluginNotFound},
		{http.MethodPost, "/plugins/{name:.*}/disable", pluginNotFound},
		{http.MethodPost, "/plugins/{name:.*}/push", pluginNotFound},
		{http.MethodPost, "/plugins/{name:.*}/upgrade", pluginJSONBody(pluginNotFound)},
		{http.MethodPost, "/plugins/{name:.*}/set", pluginJSONBody(pluginNotFound)},
		{http.MethodDelete, "/plugins/{name:.*}", pluginNotFound},
	}
}

// pluginListFilters are the filters dockerd's GET /plugins accepts.
var pluginListFilters = map[string]bool{"capability": true, "enabled": true}

func (s *Server) getPluginsList(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	if err := f.Validate(pluginListFilters); err != nil {
		return errdefs.InvalidParameter(err)
	}
	return writeJSON(w, http.StatusOK, []struct{}{})
}

func pluginNotFound(_ context.Context, _ http.ResponseWriter, _ *http.Request, vars map[string]string) error {
	return errdefs.NotFound(fmt.Errorf("plugin %q not found", vars["name"]))
}

// pluginJSONBody reads the JSON body of a route that takes one
// (privileges, settings) as dockerd's httputils.ReadJSON does before the
// plugin is looked up: a wrong content type, bad JSON or content after it
// is a 400; an empty body is no error.
func pluginJSONBody(h handlerFunc) handlerFunc {
	return func(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
		if err := checkForJSON(r); err != nil {
			return err
		}
		if r.Body != nil && r.ContentLength != 0 {
			var v json.RawMessage
			if err := decodeJSON(r.Body, &v); err != nil {
				return err
			}
		}
		return h(ctx, w, r, vars)
	}
}

// postPluginPull checks the plugin reference as dockerd does, then says
// that managed plugins are not supported.
func postPluginPull(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if _, err := reference.ParseNormalizedNamed(r.Form.Get("remote")); err != nil {
		return errdefs.InvalidParameter(err)
	}
	return pluginsUnsupported(ctx, w, r, vars)
}

func pluginsUnsupported(context.Context, http.ResponseWriter, *http.Request, map[string]string) error {
	return errdefs.NotImplemented(errors.New("jevm does not support managed plugins yet"))
}
