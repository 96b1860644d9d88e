package imagestore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/containerd/containerd/remotes"
	"github.com/containerd/containerd/remotes/docker"
	remoteerrors "github.com/containerd/containerd/remotes/errors"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	dockerHubDomain = "docker.io"
	dockerHubHost   = "registry-1.docker.io"
	userAgent       = "jevm/imagestore"
)

// isInsecure reports whether plain HTTP is allowed for a registry host
// ("host[:port]"), as dockerd decides it: localhost and loopback addresses
// always, plus the configured names and CIDRs.
func (s *Store) isInsecure(host string) bool {
	if docker.IsLocalhost(host) {
		return true
	}
	for _, h := range s.insecure {
		if h == host {
			return true
		}
	}
	hostname := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		hostname = h
	}
	if len(s.insecNet) == 0 {
		return false
	}
	ips := []net.IP{}
	if ip := net.ParseIP(hostname); ip != nil {
		ips = append(ips, ip)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		addrs, err := net.DefaultResolver.LookupIPAddr(ctx, hostname)
		cancel()
		if err == nil {
			for _, a := range addrs {
				ips = append(ips, a.IP)
			}
		}
	}
	for _, ip := range ips {
		for _, n := range s.insecNet {
			if n.Contains(ip) {
				return true
			}
		}
	}
	return false
}

// client returns the (cached) HTTP client for a host; for insecure hosts it
// accepts any TLS certificate and falls back from HTTPS to plain HTTP.
func (s *Store) client(host string, insecure bool) *http.Client {
	key := host
	if insecure {
		key = "insecure:" + host
	}
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	if c := s.clients[key]; c != nil {
		return c
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = 10 * time.Second
	tr.ResponseHeaderTimeout = 60 * time.Second
	tr.MaxIdleConnsPerHost = 4
	// The recorder sits under the HTTP fallback, so it sees the URL that
	// was actually asked.
	var rt http.RoundTripper = &failureRecorder{rt: tr}
	if insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // configured insecure registry
		rt = docker.NewHTTPFallback(rt)
	}
	c := &http.Client{Transport: rt}
	s.clients[key] = c
	return c
}

// resolver builds a containerd resolver whose hosts function applies the
// mirrors (docker.io only, before docker.io itself), the insecure-registry
// rules and anonymous (or given) token authentication.
func (s *Store) resolver(auth *registry.AuthConfig) remotes.Resolver {
	return s.resolverFor(auth, false)
}

// resolverFor is resolver; with mirrorsOnly, Docker Hub itself is left out
// (resolveOffline's second look).
func (s *Store) resolverFor(auth *registry.AuthConfig, mirrorsOnly bool) remotes.Resolver {
	return docker.NewResolver(s.resolverOptions(auth, mirrorsOnly))
}

// resolverOptions are resolverFor's options (Push sets its own tracker).
func (s *Store) resolverOptions(auth *registry.AuthConfig, mirrorsOnly bool) docker.ResolverOptions {
	creds := func(host string) (string, string, error) {
		if auth == nil {
			return "", "", nil
		}
		if auth.IdentityToken != "" {
			return "", auth.IdentityToken, nil
		}
		return auth.Username, auth.Password, nil
	}
	hdr := http.Header{}
	hdr.Set("User-Agent", userAgent)
	if auth != nil && auth.RegistryToken != "" {
		hdr.Set("Authorization", "Bearer "+auth.RegistryToken)
	}
	authorizer := func(c *http.Client) docker.Authorizer {
		return docker.NewDockerAuthorizer(
			docker.WithAuthClient(c),
			docker.WithAuthHeader(hdr),
			docker.WithAuthCreds(creds))
	}
	hosts := func(domain string) ([]docker.RegistryHost, error) {
		var out []docker.RegistryHost
		host := domain
		if domain == dockerHubDomain {
			for _, m := range s.mirrors {
				insecure := m.Scheme == "http" || s.isInsecure(m.Host)
				c := s.client(m.Host, insecure && m.Scheme == "https")
				out = append(out, docker.RegistryHost{
					Client:       c,
					Authorizer:   authorizer(c),
					Host:         m.Host,
					Scheme:       m.Scheme,
					Path:         m.Path + "/v2",
					Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve,
					Header:       hdr.Clone(),
				})
			}
			host = dockerHubHost
			if mirrorsOnly {
				return out, nil
			}
		}
		insecure := s.isInsecure(host)
		c := s.client(host, insecure)
		out = append(out, docker.RegistryHost{
			Client:       c,
			Authorizer:   authorizer(c),
			Host:         host,
			Scheme:       "https",
			Path:         "/v2",
			Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve | docker.HostCapabilityPush,
			Header:       hdr.Clone(),
		})
		return out, nil
	}
	return docker.ResolverOptions{Hosts: hosts, Headers: hdr}
}

// resolve resolves ref through the mirrors and then Docker Hub. When Hub
// cannot be reached (no network, as on a machine that only has its mirror)
// and the mirrors answered that the image is not there, that answer is the
// error, as a client expects it (404, dockerd's wording), not Hub's
// connection failure: containerd's resolver reports the first transport
// error and drops the mirrors' 404s.
func (s *Store) resolve(ctx context.Context, auth *registry.AuthConfig, ref reference.Named) (string, ocispec.Descriptor, error) {
	name, desc, err := s.resolver(auth).Resolve(ctx, ref.String())
	if err == nil || len(s.mirrors) == 0 || reference.Domain(ref) != dockerHubDomain || !isTransportError(err) {
		return name, desc, err
	}
	_, _, merr := s.resolverFor(auth, true).Resolve(ctx, ref.String())
	if !cerrdefs.IsNotFound(merr) {
		return name, desc, err
	}
	if s.mirrorHasRepository(ctx, ref) {
		return "", desc, merr // the tag (or digest) is missing
	}
	// As Docker Hub answers for a repository it does not have.
	return "", desc, &translatedError{errdefs.NotFound(fmt.Errorf("pull access denied for %s, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
		reference.FamiliarName(ref)))}
}

// translatedError is an error already worded and typed for the client.
type translatedError struct{ err error }

func (e *translatedError) Error() string { return e.err.Error() }
func (e *translatedError) Unwrap() error { return e.err }

// isTransportError: no HTTP answer at all (DNS, connection, TLS).
func isTransportError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &oe) || errors.As(err, &ne)
}

// mirrorHasRepository asks the first mirror for ref's tag list: a registry
// answers 404 (NAME_UNKNOWN) for a repository it does not have.
func (s *Store) mirrorHasRepository(ctx context.Context, ref reference.Named) bool {
	m := s.mirrors[0]
	insecure := m.Scheme == "http" || s.isInsecure(m.Host)
	u := m.Scheme + "://" + m.Host + m.Path + "/v2/" + reference.Path(ref) + "/tags/list"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return true
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := s.client(m.Host, insecure && m.Scheme == "https").Do(req)
	if err != nil {
		return true // unknown: keep the manifest error
	}
	resp.Body.Close()
	return resp.StatusCode != http.StatusNotFound
}

// translatePullError turns an error from resolving or fetching a reference
// into a typed error worded as dockerd words it.
func translatePullError(err error, ref reference.Named) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if te := (*translatedError)(nil); errors.As(err, &te) {
		return te.err
	}
	var us remoteerrors.ErrUnexpectedStatus
	if isPullAuthError(err) {
		return errdefs.NotFound(fmt.Errorf("pull access denied for %s, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
			reference.FamiliarName(ref)))
	}
	if cerrdefs.IsNotFound(err) {
		return errdefs.NotFound(fmt.Errorf("manifest for %s not found: manifest unknown: manifest unknown", reference.FamiliarString(ref)))
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &oe) || errors.As(err, &ne) {
		return errdefs.System(unwrapRequestError(err))
	}
	if errors.As(err, &us) && us.StatusCode >= 500 {
		return errdefs.Unavailable(err)
	}
	return errdefs.System(err)
}

// isPullAuthError: the registry refused the request's credentials (or
// their absence).
func isPullAuthError(err error) bool {
	var us remoteerrors.ErrUnexpectedStatus
	return errors.Is(err, docker.ErrInvalidAuthorization) ||
		(errors.As(err, &us) && (us.StatusCode == http.StatusUnauthorized || us.StatusCode == http.StatusForbidden))
}

// unwrapRequestError drops containerd's "failed to do request: " prefix so
// the message reads like dockerd's (`Head "http://...": dial tcp ...`).
func unwrapRequestError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "failed to do request: "); i >= 0 {
		return &wrapped{msg: msg[i+len("failed to do request: "):], err: err}
	}
	return err
}

type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }
