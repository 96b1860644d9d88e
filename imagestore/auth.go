package imagestore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/remotes/docker"
	dauth "github.com/containerd/containerd/remotes/docker/auth"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"
)

// Registry authentication: docker login (POST /auth) checks credentials
// the way dockerd's registry service does (GET /v2/, then the challenge's
// basic or bearer flow), and the wording of registry errors follows
// dockerd's (the distribution client's errcode text).

const (
	// loginTimeout bounds a login as dockerd's login client does.
	loginTimeout = 15 * time.Second
	// authClientID is the client_id dockerd sends to token servers.
	authClientID = "docker"
	// dockerIndexHost is the name the CLI logs in to for Docker Hub.
	dockerIndexHost = "index.docker.io"
)

// Login checks auth's credentials against the registry named by
// auth.ServerAddress (Docker Hub when empty) and returns dockerd's status
// ("Login Succeeded") and the identity (refresh) token a token server
// handed out, if any. As in dockerd, a wrong password at a token server is
// errdefs.Unauthorized ("Get "https://…/v2/": unauthorized: …"), and a
// registry that refuses the credentials itself (basic auth) answers
// "login attempt to <url> failed with status: 401 Unauthorized" (an
// untyped error: 500). Credentials go to the registry only, never to a
// mirror.
func (s *Store) Login(ctx context.Context, auth *registry.AuthConfig) (string, string, error) {
	if auth == nil {
		auth = &registry.AuthConfig{}
	}
	host, err := loginHost(auth.ServerAddress)
	if err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	log := s.log.WithFields(logrus.Fields{"registry": host, "username": auth.Username})
	client := s.client(host, s.isInsecure(host))
	token, err := s.login(ctx, client, host, auth)
	if err != nil {
		log.WithError(err).Info("login failed")
		return "", "", err
	}
	log.Info("login succeeded")
	return "Login Succeeded", token, nil
}

// loginHost turns the CLI's server address ("https://index.docker.io/v1/",
// "localhost:5000", "http://host:port") into the registry's host[:port].
func loginHost(addr string) (string, error) {
	if addr == "" {
		return dockerHubHost, nil
	}
	if !strings.HasPrefix(addr, "https://") && !strings.HasPrefix(addr, "http://") {
		addr = "https://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", errdefs.InvalidParameter(fmt.Errorf("unable to parse server address: %w", err))
	}
	if u.Host == "" {
		return "", errdefs.InvalidParameter(fmt.Errorf("unable to parse server address: no host in %q", addr))
	}
	switch u.Host {
	case dockerIndexHost, dockerHubDomain, dockerHubHost:
		return dockerHubHost, nil
	}
	return u.Host, nil
}

func (s *Store) login(ctx context.Context, client *http.Client, host string, auth *registry.AuthConfig) (string, error) {
	endpoint := "https://" + host + "/v2/"
	resp, err := loginGet(ctx, client, endpoint, "")
	if err != nil {
		return "", errdefs.System(err)
	}
	// The insecure client falls back to plain HTTP: name the URL that
	// answered, as dockerd names the endpoint it tried last.
	endpoint = resp.Request.URL.String()
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		// No authentication at all: dockerd says "Login Succeeded" too.
		return "", nil
	case http.StatusUnauthorized:
	default:
		return "", loginFailed(endpoint, resp.StatusCode)
	}

	challenges := dauth.ParseAuthHeader(resp.Header)
	for _, c := range challenges {
		if c.Scheme != dauth.BearerAuth {
			continue
		}
		token, refresh, err := fetchLoginToken(ctx, client, endpoint, c, auth)
		if err != nil {
			return "", err
		}
		resp, err := loginGet(ctx, client, endpoint, "Bearer "+token)
		if err != nil {
			return "", errdefs.System(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", loginFailed(endpoint, resp.StatusCode)
		}
		return refresh, nil
	}
	for _, c := range challenges {
		if c.Scheme != dauth.BasicAuth {
			continue
		}
		hdr := ""
		if auth.Username != "" && auth.Password != "" {
			hdr = "Basic " + basicAuth(auth.Username, auth.Password)
		}
		resp, err := loginGet(ctx, client, endpoint, hdr)
		if err != nil {
			return "", errdefs.System(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", loginFailed(endpoint, resp.StatusCode)
		}
		return "", nil
	}
	return "", loginFailed(endpoint, resp.StatusCode)
}

// loginFailed is dockerd's error for a registry that does not accept the
// login; dockerd leaves it untyped (500).
func loginFailed(endpoint string, code int) error {
	return errdefs.System(fmt.Errorf("login attempt to %s failed with status: %d %s", endpoint, code, http.StatusText(code)))
}

func loginGet(ctx context.Context, client *http.Client, u, authorization string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", userAgent)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	return client.Do(req)
}

func basicAuth(user, pass string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// fetchLoginToken gets a token for no particular scope, as dockerd's login
// does: with an identity token, the OAuth refresh-token grant (POST);
// otherwise a GET with basic credentials asking for an offline (refresh)
// token. It returns the token and the refresh token, if one was issued.
func fetchLoginToken(ctx context.Context, client *http.Client, endpoint string, c dauth.Challenge, auth *registry.AuthConfig) (string, string, error) {
	realm := c.Parameters["realm"]
	if realm == "" {
		return "", "", errdefs.System(fmt.Errorf("no realm specified for token auth challenge"))
	}
	realmURL, err := url.Parse(realm)
	if err != nil {
		return "", "", errdefs.System(fmt.Errorf("invalid token auth challenge realm: %w", err))
	}
	service := c.Parameters["service"]
	var req *http.Request
	if auth.IdentityToken != "" {
		form := url.Values{}
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", auth.IdentityToken)
		form.Set("service", service)
		form.Set("client_id", authClientID)
		form.Set("access_type", "offline")
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, realmURL.String(), strings.NewReader(form.Encode()))
		if err != nil {
			return "", "", errdefs.System(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		q := realmURL.Query()
		if service != "" {
			q.Set("service", service)
		}
		q.Set("offline_token", "true")
		q.Set("client_id", authClientID)
		realmURL.RawQuery = q.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, realmURL.String(), nil)
		if err != nil {
			return "", "", errdefs.System(err)
		}
		if auth.Username != "" && auth.Password != "" {
			req.SetBasicAuth(auth.Username, auth.Password)
		}
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := client.Do(req)
	if err != nil {
		return "", "", errdefs.System(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		// dockerd: the distribution client's error for the token
		// request, reported against the /v2/ URL it was fetching.
		msg := registryErrorMessage(resp.StatusCode, resp.Header, body)
		err := fmt.Errorf("Get %q: %s", endpoint, msg)
		if resp.StatusCode == http.StatusUnauthorized {
			return "", "", errdefs.Unauthorized(err)
		}
		if resp.StatusCode == http.StatusForbidden {
			return "", "", errdefs.Forbidden(err)
		}
		return "", "", errdefs.System(err)
	}
	var tr struct {
		Token        string `json:"token"`
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", "", errdefs.System(fmt.Errorf("unable to decode token response: %w", err))
	}
	token := tr.Token
	if token == "" {
		token = tr.AccessToken
	}
	if token == "" {
		return "", "", errdefs.System(errors.New("authorization server did not include a token in the response"))
	}
	return token, tr.RefreshToken, nil
}

// registryErrorMessage words a registry's (or token server's) error
// response as the distribution client that dockerd uses does: the
// errcode list ("unauthorized: authentication required"), a token server's
// {"details": …}, or the OAuth error in a Bearer challenge.
func registryErrorMessage(status int, hdr http.Header, body []byte) string {
	var parts []string
	if hdr != nil {
		for _, c := range dauth.ParseAuthHeader(hdr) {
			if c.Scheme != dauth.BearerAuth {
				continue
			}
			code := ""
			switch c.Parameters["error"] {
			case "invalid_token":
				code = "unauthorized"
			case "insufficient_scope":
				code = "denied"
			default:
				continue
			}
			msg := c.Parameters["error_description"]
			if msg == "" {
				msg = defaultCodeMessage(code)
			}
			parts = append(parts, code+": "+msg)
			break
		}
	}
	var details struct {
		Details string `json:"details"`
	}
	var list struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	switch {
	case json.Unmarshal(body, &details) == nil && details.Details != "":
		parts = append(parts, statusCode(status)+": "+details.Details)
	case json.Unmarshal(body, &list) == nil && len(list.Errors) > 0:
		for _, e := range list.Errors {
			code := strings.ToLower(strings.ReplaceAll(e.Code, "_", " "))
			if code == "" {
				code = "unknown"
			}
			parts = append(parts, code+": "+e.Message)
		}
	case len(parts) == 0:
		if status == http.StatusUnauthorized {
			parts = append(parts, "unauthorized: "+defaultCodeMessage("unauthorized"))
		} else if len(bytes.TrimSpace(body)) > 0 {
			parts = append(parts, statusCode(status)+": "+strings.TrimSpace(string(body)))
		} else {
			parts = append(parts, fmt.Sprintf("unexpected status %d %s", status, http.StatusText(status)))
		}
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "errors:\n" + strings.Join(parts, "\n") + "\n"
}

// statusCode is the errcode the distribution client gives a status whose
// body carries only a message.
func statusCode(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "denied"
	case http.StatusTooManyRequests:
		return "toomanyrequests"
	}
	return "unknown"
}

func defaultCodeMessage(code string) string {
	switch code {
	case "unauthorized":
		return "authentication required"
	case "denied":
		return "requested access to the resource is denied"
	}
	return "unknown error"
}

// authFailure records the last 401/403 answer of a registry conversation
// (see failureRecorder), so that an error from containerd's authorizer,
// which drops the response, can still be worded with the registry's own
// message.
type authFailure struct {
	mu     sync.Mutex
	method string
	url    string
	status int
	header http.Header
	body   []byte
}

func (a *authFailure) message() (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.status == 0 {
		return "", false
	}
	return registryErrorMessage(a.status, a.header, a.body), true
}

// basicAuthError words an authorization failure at a registry that asks
// for HTTP basic authentication (an htpasswd registry) as dockerd's
// distribution client does: without credentials `Head "<url>": no basic
// auth credentials`, with wrong ones the registry's message
// ("unauthorized: authentication required"). dockerd leaves both untyped
// (500). ok is false for other registries (token auth: Docker Hub's
// wording applies).
func (a *authFailure) basicAuthError(err error) (error, bool) {
	if a == nil {
		return nil, false
	}
	a.mu.Lock()
	method, u, status, hdr, body := a.method, a.url, a.status, a.header, a.body
	a.mu.Unlock()
	if status != http.StatusUnauthorized {
		return nil, false
	}
	basic := false
	for _, c := range dauth.ParseAuthHeader(hdr) {
		if c.Scheme == dauth.BasicAuth {
			basic = true
		}
	}
	if !basic {
		return nil, false
	}
	if errors.Is(err, docker.ErrInvalidAuthorization) && strings.Contains(err.Error(), "no basic auth credentials") {
		op := method
		if len(op) > 1 {
			op = op[:1] + strings.ToLower(op[1:])
		}
		return errdefs.System(fmt.Errorf("%s %q: no basic auth credentials", op, u)), true
	}
	return errdefs.System(errors.New(registryErrorMessage(status, hdr, body))), true
}

type authFailureKey struct{}

func withAuthFailure(ctx context.Context) (context.Context, *authFailure) {
	a := &authFailure{}
	return context.WithValue(ctx, authFailureKey{}, a), a
}

// failureRecorder wraps a registry client's transport: when the request's
// context carries an authFailure, a 401 or 403 answer's body is kept
// there (and handed on unchanged).
type failureRecorder struct{ rt http.RoundTripper }

func (f *failureRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := f.rt.RoundTrip(req)
	if err != nil || resp == nil {
		return resp, err
	}
	a, _ := req.Context().Value(authFailureKey{}).(*authFailure)
	if a == nil || (resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden) {
		return resp, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	a.mu.Lock()
	a.method, a.url = req.Method, req.URL.String()
	a.status, a.header, a.body = resp.StatusCode, resp.Header.Clone(), body
	a.mu.Unlock()
	return resp, nil
}

// isAuthError reports whether err is the registry refusing the request's
// credentials (or their absence).
func isAuthError(err error) bool {
	return errors.Is(err, docker.ErrInvalidAuthorization)
}
