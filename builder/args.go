package builder

import (
	"sort"
	"strings"
)

// builtinArgs are the proxy variables any build may pass without an ARG
// for them; they reach RUN's environment but are not recorded in the image
// or the cache key unless the Dockerfile declares them (as in dockerd).
var builtinArgs = map[string]bool{
	"HTTP_PROXY": true, "http_proxy": true,
	"HTTPS_PROXY": true, "https_proxy": true,
	"FTP_PROXY": true, "ftp_proxy": true,
	"NO_PROXY": true, "no_proxy": true,
	"ALL_PROXY": true, "all_proxy": true,
}

// buildArgs are the --build-arg values and what the Dockerfile consumed.
type buildArgs struct {
	given map[string]*string
	meta  map[string]*string // global ARGs (before the first FROM)
	used  map[string]bool
}

func newBuildArgs(given map[string]*string) *buildArgs {
	g := map[string]*string{}
	for k, v := range given {
		g[k] = v
	}
	return &buildArgs{given: g, meta: map[string]*string{}, used: map[string]bool{}}
}

// declare resolves an ARG: a --build-arg value wins over the default,
// and a stage's ARG without a default takes the global ARG's value.
func (a *buildArgs) declare(key string, def *string, global bool) *string {
	if v, ok := a.given[key]; ok {
		a.used[key] = true
		if v != nil {
			return v
		}
	}
	if def == nil && !global {
		if v, ok := a.meta[key]; ok {
			return v
		}
	}
	return def
}

// unused lists the given args nothing declared.
func (a *buildArgs) unused() []string {
	var out []string
	for k := range a.given {
		if !a.used[k] && !builtinArgs[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// stageArgs are the ARGs in effect in a stage, in declaration order.
type stageArgs struct {
	keys   []string
	values map[string]*string
}

func (s *stageArgs) set(key string, v *string) {
	if s.values == nil {
		s.values = map[string]*string{}
	}
	if _, ok := s.values[key]; !ok {
		s.keys = append(s.keys, key)
	}
	s.values[key] = v
}

// env returns "K=V" for the declared args with a value that env does not
// set (ENV wins over ARG), then, if withBuiltins, the given proxy args.
func (s *stageArgs) env(env []string, given map[string]*string, withBuiltins bool) []string {
	set := map[string]bool{}
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		set[k] = true
	}
	var out []string
	for _, k := range s.keys {
		if v := s.values[k]; v != nil && !set[k] {
			out = append(out, k+"="+*v)
			set[k] = true
		}
	}
	if withBuiltins {
		var keys []string
		for k, v := range given {
			if builtinArgs[k] && v != nil && !set[k] {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, k+"="+*given[k])
		}
	}
	return out
}
