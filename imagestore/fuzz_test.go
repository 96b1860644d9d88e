package imagestore

import (
	"slices"
	"strings"
	"testing"

	"github.com/distribution/reference"
	"github.com/docker/docker/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
)

// namesImageID reports whether Resolve reads s as an image ID rather than a
// reference ("sha256:<64 hex>", "sha512:<128 hex>", 64 hex digits), as
// dockerd's GetImage does: a reference spelt that way is not reachable by
// its familiar form, in dockerd as here.
func namesImageID(s string) bool {
	ref, err := reference.ParseAnyReference(s)
	if err != nil {
		return false
	}
	_, named := ref.(reference.Named)
	return !named
}

// fuzzStore is a store with no files: just the records Resolve reads.
func fuzzStore(id digest.Digest, key string) *Store {
	l := logrus.New()
	l.SetLevel(logrus.PanicLevel)
	return &Store{
		log:    l,
		images: map[digest.Digest]*Image{id: {ID: id}},
		refs:   map[string]digest.Digest{key: id},
	}
}

// FuzzParseReference feeds any string to jevm's reference handling: the
// pull reference (ParseReference: normalisation, default tag, a tag
// dropped beside a digest), the tag API's repo and tag (tagReference), the
// key a reference is stored under (refKey) and Resolve. Whatever the
// input: no panic; a refusal is InvalidParameter (400); ParseReference
// accepts exactly what distribution/reference's ParseNormalizedNamed
// accepts, with the same name and digest, and gives either a digest or a
// tag ("latest" when none was given), never both; its String and
// FamiliarString parse back to the same reference and are its store key;
// an image recorded under that key (as a pull records it) is found by
// Resolve from the input, the full and the familiar form (unless that
// spelling is an image ID) and lists the familiar form in RepoTags or
// RepoDigests; Resolve of any string finds that image or fails with
// InvalidParameter or NotFound. Same for tagReference(repo, tag), which
// also never names the repository "sha256".
func FuzzParseReference(f *testing.F) {
	hex := strings.Repeat("ab", 32)
	for _, s := range []struct{ ref, tag string }{
		{"busybox", ""},
		{"busybox:1.36", "v1"},
		{"library/busybox", "latest"},
		{"docker.io/library/busybox:latest", ""},
		{"index.docker.io/library/busybox", ""},
		{"user/app", "1.0-rc.1_x"},
		{"localhost:5000/a/b:tag@sha256:" + hex, "t"},
		{"localhost/a", ""},
		{"127.0.0.1:5000/a/b:v1", ""},
		{"[::1]:5000/a:b", ""},
		{"busybox@sha256:" + hex, ""},
		{"busybox:1.36@sha256:" + hex, ""},
		{"sha256:" + hex, ""},
		{hex, ""},
		{"sha256", hex},
		{"sha512", strings.Repeat("cd", 64)},
		{"Busybox", "Latest"},
		{"busybox:", ""},
		{"-busybox", ".tag"},
		{"a b", "a b"},
		{"", ""},
		{":", ":"},
		{"@", ""},
		{"a@sha256:" + hex[:10], ""},
		{"a@sha256:" + strings.ToUpper(hex), ""},
		{"a//b", ""},
		{"a/b/c/d/e/f/g/h:" + strings.Repeat("t", 128), strings.Repeat("t", 129)},
		{strings.Repeat("a/", 127) + "a", ""},
		{strings.Repeat("a", 256), ""},
		{"example.com:99999/a", ""},
		{"EXAMPLE.COM/a", ""},
		{"a.b.c/d__e--f.g", ""},
		{"docker.io/busybox", ""},
		{"docker.io/library/sha256:" + hex, ""},
	} {
		f.Add(s.ref, s.tag)
	}
	id := digest.FromString("fuzz image")
	f.Fuzz(func(t *testing.T, s, tag string) {
		// Resolve of anything, with one image recorded.
		if img, err := fuzzStore(id, "docker.io/library/busybox:latest").Resolve(s); err != nil {
			if !errdefs.IsInvalidParameter(err) && !errdefs.IsNotFound(err) {
				t.Fatalf("Resolve(%q): error of the wrong kind: %v (%T)", s, err, err)
			}
		} else if img.ID != id {
			t.Fatalf("Resolve(%q) = %s", s, img.ID)
		}

		named, err := ParseReference(s)
		up, uerr := reference.ParseNormalizedNamed(s)
		if err != nil {
			if !errdefs.IsInvalidParameter(err) {
				t.Fatalf("ParseReference(%q): error is not InvalidParameter: %v", s, err)
			}
			if uerr == nil {
				t.Fatalf("ParseReference(%q) refused what ParseNormalizedNamed accepts (%s): %v", s, up, err)
			}
		} else {
			if uerr != nil {
				t.Fatalf("ParseReference(%q) = %s, but ParseNormalizedNamed refuses it: %v", s, named, uerr)
			}
			checkNamed(t, "ParseReference", s, named)
			if named.Name() != up.Name() {
				t.Fatalf("ParseReference(%q): name %s, want %s", s, named.Name(), up.Name())
			}
			c, canonical := named.(reference.Canonical)
			tg, tagged := named.(reference.NamedTagged)
			if uc, ok := up.(reference.Canonical); ok {
				if !canonical || c.Digest() != uc.Digest() {
					t.Fatalf("ParseReference(%q) = %s: lost the digest %s", s, named, uc.Digest())
				}
			} else if ut, ok := up.(reference.NamedTagged); ok {
				if !tagged || tg.Tag() != ut.Tag() {
					t.Fatalf("ParseReference(%q) = %s: tag is not %s", s, named, ut.Tag())
				}
			} else if !tagged || tg.Tag() != "latest" {
				t.Fatalf("ParseReference(%q) = %s: no default tag", s, named)
			}
			for _, form := range []string{named.String(), reference.FamiliarString(named)} {
				again, err := ParseReference(form)
				if err != nil || again.String() != named.String() {
					t.Fatalf("ParseReference(%q) = %s; parsing %q again gives %v, %v", s, named, form, again, err)
				}
			}
			checkStored(t, id, named, s)
		}

		tr, err := tagReference(s, tag)
		if err != nil {
			if !errdefs.IsInvalidParameter(err) {
				t.Fatalf("tagReference(%q, %q): error is not InvalidParameter: %v", s, tag, err)
			}
			return
		}
		checkNamed(t, "tagReference", s, tr)
		if _, ok := reference.Reference(tr).(reference.Canonical); ok {
			t.Fatalf("tagReference(%q, %q) = %s: has a digest", s, tag, tr)
		}
		if reference.FamiliarName(tr) == "sha256" {
			t.Fatalf("tagReference(%q, %q) = %s: ambiguous name", s, tag, tr)
		}
		if tag != "" && tr.Tag() != tag {
			t.Fatalf("tagReference(%q, %q) = %s: wrong tag", s, tag, tr)
		}
		checkStored(t, id, tr, "")
	})
}

// checkNamed: a normalised reference has a domain, exactly one of a tag
// and a digest, its store key is its String, and its String and
// FamiliarString parse back to it.
func checkNamed(t *testing.T, fn, s string, named reference.Named) {
	t.Helper()
	_, canonical := named.(reference.Canonical)
	_, tagged := named.(reference.NamedTagged)
	if canonical == tagged {
		t.Fatalf("%s(%q) = %s: digest %v, tag %v; want exactly one", fn, s, named, canonical, tagged)
	}
	if reference.Domain(named) == "" {
		t.Fatalf("%s(%q) = %s: no domain", fn, s, named)
	}
	if k := refKey(named); k != named.String() {
		t.Fatalf("%s(%q) = %s: stored under %s", fn, s, named, k)
	}
	for _, form := range []string{named.String(), reference.FamiliarString(named)} {
		again, err := reference.ParseNormalizedNamed(form)
		if err != nil || again.String() != named.String() {
			t.Fatalf("%s(%q) = %s; %q parses as %v, %v", fn, s, named, form, again, err)
		}
	}
}

// checkStored records an image under named's key and looks it up by the
// input (if any) and by named's full and familiar forms.
func checkStored(t *testing.T, id digest.Digest, named reference.Named, input string) {
	t.Helper()
	st := fuzzStore(id, refKey(named))
	familiar := reference.FamiliarString(named)
	for _, q := range []string{input, named.String(), familiar} {
		if q == "" || namesImageID(q) {
			continue
		}
		img, err := st.Resolve(q)
		if err != nil || img.ID != id {
			t.Fatalf("stored as %s, Resolve(%q) = %v, %v", refKey(named), q, img, err)
		}
		if !slices.Contains(img.RepoTags, familiar) && !slices.Contains(img.RepoDigests, familiar) {
			t.Fatalf("stored as %s, Resolve(%q) lists tags %q, digests %q", refKey(named), q, img.RepoTags, img.RepoDigests)
		}
	}
}
