package imagestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/remotes"
	"github.com/containerd/containerd/remotes/docker"
	remoteerrors "github.com/containerd/containerd/remotes/errors"
	cerrdefs "github.com/containerd/errdefs"
	clog "github.com/containerd/log"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
)

const (
	// DefaultMaxConcurrentUploads is dockerd's default of
	// --max-concurrent-uploads.
	DefaultMaxConcurrentUploads = 5
	// maxUploadAttempts is how often dockerd tries a layer upload.
	maxUploadAttempts = 5
)

// PushResult is the aux message after each pushed tag (dockerd's
// types.PushResult: what the CLI's content trust signs).
type PushResult struct {
	Tag    string
	Digest string
	Size   int
}

// Push uploads images to their registry as dockerd's POST
// /images/{name}/push does. ref is "name:tag" to push one tag, or a bare
// name to push every tag of the repository. A platform (nil: none given)
// must match the image's: the store holds one platform per image, so it
// only selects, as in dockerd, whether the push happens. For each tag the layer blobs
// (up to five at a time), the config and the manifest go to the registry
// straight from the content store, unchanged, so the manifest digest is
// the one the image already has; afterwards the repository's digest
// reference (name@digest) points at the image, as after a pull.
//
// Progress goes to out as dockerd writes it: "The push refers to
// repository [...]", per layer (named by its diff ID) "Preparing",
// "Waiting", "Pushing", "Pushed" / "Layer already exists" / "Mounted from
// …", then "<tag>: digest: sha256:… size: N" and an aux PushResult. Only
// an invalid reference is returned before anything is written; every
// other error (no such image, registry refusal) comes after the first
// line, so the caller reports it in the stream, as dockerd does.
func (s *Store) Push(ctx context.Context, refStr string, platform *ocispec.Platform, auth *registry.AuthConfig, out io.Writer) error {
	named, err := reference.ParseNormalizedNamed(refStr)
	if err != nil {
		return errdefs.InvalidParameter(err)
	}
	if platform != nil {
		// dockerd looks the image up with the platform before it writes
		// anything, so these are HTTP errors.
		img, err := s.Resolve(refStr)
		if err != nil {
			return err
		}
		want := platforms.Normalize(*platform)
		if have := platforms.Normalize(img.Platform()); !platforms.Only(want).Match(have) {
			return errdefs.NotFound(fmt.Errorf("image with reference %s was found but its platform (%s) does not match the specified platform (%s)",
				reference.FamiliarString(named), platforms.FormatAll(have), platforms.FormatAll(want)))
		}
	}
	repo := reference.TrimNamed(named)
	log := s.log.WithField("ref", named.String())
	ctx = clog.WithLogger(ctx, log)
	po := newProgressOut(out)
	po.status("", "The push refers to repository ["+repo.Name()+"]")

	targets, err := s.pushTargets(named)
	if err != nil {
		return err
	}

	ctx, failure := withAuthFailure(ctx)
	opts := s.resolverOptions(auth, false)
	// One tracker for the whole push: a blob pushed (or found) for one
	// tag is "Layer already exists" for the next, as in dockerd.
	tracker := docker.NewInMemoryTracker()
	opts.Tracker = tracker
	resolver := docker.NewResolver(opts)
	for _, t := range targets {
		start := time.Now()
		res, err := s.pushTag(ctx, resolver, tracker, t.ref, t.id, po, log)
		if err != nil {
			log.WithError(err).Warn("push failed")
			return translatePushError(err, failure)
		}
		log.WithFields(logrus.Fields{"tag": t.ref.Tag(), "digest": res.Digest, "took": time.Since(start).Round(time.Millisecond)}).Info("pushed image")
	}
	return nil
}

type pushTarget struct {
	ref reference.NamedTagged
	id  digest.Digest
}

// pushTargets finds what a push of named sends: the tag, or every tag of
// the repository (sorted), with dockerd's errors.
func (s *Store) pushTargets(named reference.Named) ([]pushTarget, error) {
	repo := reference.TrimNamed(named)
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []pushTarget
	anyRef := false
	for k, id := range s.refs {
		r, err := reference.ParseNormalizedNamed(k)
		if err != nil || r.Name() != repo.Name() {
			continue
		}
		anyRef = true
		if t, ok := r.(reference.NamedTagged); ok {
			if _, dig := r.(reference.Digested); !dig {
				all = append(all, pushTarget{ref: t, id: id})
			}
		}
	}
	if !anyRef {
		return nil, errdefs.NotFound(fmt.Errorf("An image does not exist locally with the tag: %s", reference.FamiliarName(repo)))
	}
	if t, ok := named.(reference.NamedTagged); ok {
		id, found := s.refs[refKey(t)]
		if !found {
			return nil, errdefs.NotFound(fmt.Errorf("tag does not exist: %s", reference.FamiliarString(t)))
		}
		return []pushTarget{{ref: t, id: id}}, nil
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, errdefs.InvalidParameter(errors.New("cannot push a digest reference"))
	}
	if len(all) == 0 {
		return nil, errdefs.NotFound(fmt.Errorf("no tags to push for %s", reference.FamiliarName(repo)))
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ref.Tag() < all[j].ref.Tag() })
	return all, nil
}

// pushLayer is one distinct layer blob of a push.
type pushLayer struct {
	desc ocispec.Descriptor
	id   string // 12 hex digits of the diff ID, as dockerd shows it
	done chan struct{}
	err  error
}

// pushTag pushes one tagged image: layers, config, manifest.
func (s *Store) pushTag(ctx context.Context, resolver remotes.Resolver, tracker docker.StatusTracker, ref reference.NamedTagged, id digest.Digest, po *progressOut, log logrus.FieldLogger) (*PushResult, error) {
	s.mu.Lock()
	rec := s.images[id]
	var img *Image
	var mountFrom []string
	if rec != nil {
		img = s.copyLocked(rec)
		mountFrom = s.mountCandidatesLocked(ref, id)
	}
	s.mu.Unlock()
	if img == nil {
		return nil, errdefs.NotFound(fmt.Errorf("could not find image from tag %s: No such image: %s", reference.FamiliarString(ref), id))
	}
	blobs := []digest.Digest{img.Manifest.Digest, img.ConfigDescriptor.Digest}
	for _, l := range img.Layers {
		blobs = append(blobs, l.Digest)
	}
	release := s.lease(blobs...)
	defer release()
	for _, d := range blobs {
		if _, err := s.cs.Info(ctx, d); err != nil {
			return nil, errdefs.NotFound(fmt.Errorf("image %s: blob %s is missing from the content store: %w", reference.FamiliarString(ref), d, err))
		}
	}
	manifestBytes, err := content.ReadBlob(ctx, s.cs, img.Manifest)
	if err != nil {
		return nil, errdefs.System(fmt.Errorf("reading manifest %s: %w", img.Manifest.Digest, err))
	}

	pusher, err := resolver.Pusher(ctx, ref.String())
	if err != nil {
		return nil, err
	}

	// Layers, top first (dockerd walks the layer chain downwards), one
	// job per distinct blob; foreign layers stay where their URLs say.
	diffIDs := img.Config.RootFS.DiffIDs
	var jobs []*pushLayer
	seen := map[digest.Digest]bool{}
	for i := len(img.Layers) - 1; i >= 0; i-- {
		l := img.Layers[i]
		if isForeignLayer(l.MediaType) {
			continue
		}
		lid := shortID(l.Digest)
		if i < len(diffIDs) {
			lid = shortID(diffIDs[i])
		}
		po.update(lid, "Preparing")
		if seen[l.Digest] {
			continue
		}
		seen[l.Digest] = true
		desc := stripDescriptor(l)
		if len(mountFrom) > 0 {
			// containerd keys the source by host name, without the port.
			host := reference.Domain(ref)
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			desc.Annotations = map[string]string{
				"containerd.io/distribution.source." + host: strings.Join(mountFrom, ","),
			}
		}
		jobs = append(jobs, &pushLayer{desc: desc, id: lid, done: make(chan struct{})})
	}

	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, DefaultMaxConcurrentUploads)
	for _, j := range jobs {
		select {
		case sem <- struct{}{}:
			go func(j *pushLayer) {
				defer func() { <-sem }()
				s.runPushLayer(lctx, cancel, pusher, tracker, j, po, log)
			}(j)
		default:
			po.update(j.id, "Waiting")
			go func(j *pushLayer) {
				select {
				case sem <- struct{}{}:
				case <-lctx.Done():
					j.err = lctx.Err()
					close(j.done)
					return
				}
				defer func() { <-sem }()
				s.runPushLayer(lctx, cancel, pusher, tracker, j, po, log)
			}(j)
		}
	}
	var firstErr error
	for _, j := range jobs {
		<-j.done
		if j.err != nil && (firstErr == nil || errors.Is(firstErr, context.Canceled)) {
			firstErr = j.err
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}

	// The config (no progress line, as in dockerd), then the manifest
	// under the tag.
	if err := s.pushBlob(ctx, pusher, tracker, stripDescriptor(img.ConfigDescriptor), nil); err != nil && !cerrdefs.IsAlreadyExists(err) {
		return nil, err
	}
	mdesc := ocispec.Descriptor{MediaType: img.Manifest.MediaType, Digest: img.Manifest.Digest, Size: int64(len(manifestBytes))}
	if mdesc.MediaType == "" {
		mdesc.MediaType = detectMediaType("", manifestBytes)
	}
	// A writer of its own per tag: the tracker would otherwise take a
	// second tag of the same manifest for already pushed.
	ing, ok := pusher.(content.Ingester)
	if !ok {
		return nil, errdefs.System(fmt.Errorf("pusher %T cannot open writers", pusher))
	}
	w, err := ing.Writer(ctx, content.WithRef("manifest-"+ref.Tag()+"-"+mdesc.Digest.String()), content.WithDescriptor(mdesc))
	switch {
	case err == nil:
		if err := content.Copy(ctx, w, strings.NewReader(string(manifestBytes)), mdesc.Size, mdesc.Digest); err != nil {
			w.Close()
			return nil, err
		}
		w.Close()
	case cerrdefs.IsAlreadyExists(err):
		// The tag already names this manifest.
	default:
		return nil, err
	}

	res := &PushResult{Tag: ref.Tag(), Digest: mdesc.Digest.String(), Size: int(mdesc.Size)}
	po.status("", fmt.Sprintf("%s: digest: %s size: %d", res.Tag, res.Digest, res.Size))
	if err := s.addDigestRef(ref, mdesc.Digest, id); err != nil {
		return nil, err
	}
	po.aux(res)
	return res, nil
}

// runPushLayer uploads one layer with dockerd's retries, then marks it
// done; a failure cancels the other uploads of the tag.
func (s *Store) runPushLayer(ctx context.Context, cancel func(), pusher remotes.Pusher, tracker docker.StatusTracker, j *pushLayer, po *progressOut, log logrus.FieldLogger) {
	defer close(j.done)
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := s.pushBlob(ctx, pusher, tracker, j.desc, func(n int64) {
			po.progress(j.id, "Pushing", n, j.desc.Size, start)
		})
		switch {
		case err == nil:
			po.update(j.id, "Pushed")
			return
		case cerrdefs.IsAlreadyExists(err):
			if st, e := tracker.GetStatus(remotes.MakeRefKey(ctx, j.desc)); e == nil && st.MountedFrom != "" {
				// containerd names the source "host/repo"; dockerd the repo.
				from := st.MountedFrom
				if i := strings.IndexByte(from, '/'); i >= 0 {
					from = from[i+1:]
				}
				po.update(j.id, "Mounted from "+from)
			} else {
				po.update(j.id, "Layer already exists")
			}
			return
		}
		if ctx.Err() != nil || attempt >= maxUploadAttempts || !retryablePushError(err) {
			j.err = err
			cancel()
			return
		}
		delay := attempt * 5
		log.WithError(err).WithField("layer", j.desc.Digest).Warnf("layer upload failed, retrying in %ds", delay)
		if !po.retryCountdown(ctx, j.id, delay) {
			j.err = err
			return
		}
	}
}

// pushBlob sends one blob from the content store; errdefs.AlreadyExists
// when the registry has it (or mounted it from another repository).
func (s *Store) pushBlob(ctx context.Context, pusher remotes.Pusher, tracker docker.StatusTracker, desc ocispec.Descriptor, progress func(int64)) error {
	w, err := pusher.Push(ctx, desc)
	if err != nil {
		return err
	}
	defer w.Close()
	ra, err := s.cs.ReaderAt(ctx, desc)
	if err != nil {
		return errdefs.System(fmt.Errorf("reading %s: %w", desc.Digest, err))
	}
	defer ra.Close()
	r := &progressSection{SectionReader: io.NewSectionReader(ra, 0, desc.Size), fn: progress}
	return content.Copy(ctx, w, r, desc.Size, desc.Digest)
}

// progressSection is a seekable reader (content.Copy seeks to resume
// after a reset) that reports its position.
type progressSection struct {
	*io.SectionReader
	fn func(pos int64)
}

func (p *progressSection) Read(b []byte) (int, error) {
	n, err := p.SectionReader.Read(b)
	if n > 0 && p.fn != nil {
		pos, _ := p.SectionReader.Seek(0, io.SeekCurrent)
		p.fn(pos)
	}
	return n, err
}

// mountCandidatesLocked lists the other repositories of ref's registry
// that hold image id (and so its layers): the registry can mount the
// blobs from there instead of receiving them again. s.mu must be held.
func (s *Store) mountCandidatesLocked(ref reference.Named, id digest.Digest) []string {
	domain := reference.Domain(ref)
	seen := map[string]bool{}
	var out []string
	for k, v := range s.refs {
		if v != id {
			continue
		}
		r, err := reference.ParseNormalizedNamed(k)
		if err != nil || reference.Domain(r) != domain || r.Name() == ref.Name() {
			continue
		}
		p := reference.Path(r)
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// addDigestRef records repo@dgst -> id (RepoDigests), as dockerd does
// after a push.
func (s *Store) addDigestRef(ref reference.Named, dgst digest.Digest, id digest.Digest) error {
	dref, err := reference.WithDigest(reference.TrimNamed(ref), dgst)
	if err != nil {
		return errdefs.System(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.images[id] == nil {
		return nil // deleted meanwhile: nothing to point at
	}
	if s.refs[dref.String()] == id {
		return nil
	}
	s.refs[dref.String()] = id
	if err := s.saveLocked(); err != nil {
		return errdefs.System(err)
	}
	return nil
}

func isForeignLayer(mt string) bool {
	switch mt {
	case images.MediaTypeDockerSchema2LayerForeign, images.MediaTypeDockerSchema2LayerForeignGzip,
		ocispec.MediaTypeImageLayerNonDistributable, ocispec.MediaTypeImageLayerNonDistributableGzip, //nolint:staticcheck // still found in the wild
		ocispec.MediaTypeImageLayerNonDistributableZstd: //nolint:staticcheck // still found in the wild
		return true
	}
	return false
}

// retryablePushError: dockerd does not retry what the registry refused,
// nor a registry it cannot reach at all (its ping fails before any
// upload).
func retryablePushError(err error) bool {
	if isAuthError(err) || errdefs.IsInvalidParameter(err) || errdefs.IsNotFound(err) {
		return false
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return false
	}
	var us remoteerrors.ErrUnexpectedStatus
	if errors.As(err, &us) {
		return us.StatusCode >= 500 || us.StatusCode == http.StatusTooManyRequests
	}
	return true
}

// translatePushError words a push failure as dockerd reports it in the
// stream: the registry's own error ("unauthorized: authentication
// required", "denied: requested access to the resource is denied"), or
// the transport error.
func translatePushError(err error, failure *authFailure) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if errdefs.IsNotFound(err) || errdefs.IsInvalidParameter(err) || errdefs.IsSystem(err) {
		return err
	}
	var us remoteerrors.ErrUnexpectedStatus
	if errors.As(err, &us) {
		msg := errors.New(registryErrorMessage(us.StatusCode, nil, us.Body))
		switch us.StatusCode {
		case http.StatusUnauthorized:
			return errdefs.Unauthorized(msg)
		case http.StatusForbidden:
			return errdefs.Forbidden(msg)
		case http.StatusNotFound:
			return errdefs.NotFound(msg)
		}
		if us.StatusCode >= 500 {
			return errdefs.Unavailable(msg)
		}
		return errdefs.System(msg)
	}
	if isAuthError(err) {
		if strings.Contains(err.Error(), "no basic auth credentials") {
			// dockerd's words for an htpasswd registry and no login.
			return errdefs.Unauthorized(errors.New("no basic auth credentials"))
		}
		if msg, ok := failure.message(); ok {
			return errdefs.Unauthorized(errors.New(msg))
		}
		return errdefs.Unauthorized(err)
	}
	if isTransportError(err) {
		return errdefs.System(unwrapRequestError(err))
	}
	return errdefs.System(err)
}

// aux writes an aux message ({"aux": …}), as dockerd's stream formatter.
func (p *progressOut) aux(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	raw := json.RawMessage(b)
	p.write(&jsonmessage.JSONMessage{Aux: &raw, Progress: &jsonmessage.JSONProgress{}})
}
