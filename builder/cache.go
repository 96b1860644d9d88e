package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/jevm/jevm/internal/atomicfile"
)

// cacheIndex maps a step's cache key to the image the step made. dockerd's
// classic builder finds a cached step by searching the parent's children
// for an equal config; an index keyed by a digest of the same inputs (the
// parent image, the step as it will be recorded, the resulting config and
// the checksums of copied files) finds it without a scan and survives
// restarts.
type cacheIndex struct {
	mu      sync.Mutex
	path    string
	entries map[string]string
}

func openCache(path string) (*cacheIndex, error) {
	c := &cacheIndex{path: path, entries: map[string]string{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("builder: reading the cache index: %w", err)
	}
	if err := json.Unmarshal(b, &c.entries); err != nil {
		// A damaged index only costs rebuilds.
		c.entries = map[string]string{}
	}
	return c, nil
}

func (c *cacheIndex) get(key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.entries[key]
	return id, ok
}

func (c *cacheIndex) put(key, imageID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[key] = imageID
	return c.saveLocked()
}

func (c *cacheIndex) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; ok {
		delete(c.entries, key)
		c.saveLocked()
	}
}

// clear forgets every entry and returns their keys.
func (c *cacheIndex) clear() ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.entries))
	for k := range c.entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	c.entries = map[string]string{}
	return keys, c.saveLocked()
}

func (c *cacheIndex) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *cacheIndex) saveLocked() error {
	b, err := json.Marshal(c.entries)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(c.path, b, 0o600)
}

// cacheKey digests a step's inputs. Every part is length-prefixed, so
// that no two different lists give the same bytes.
func cacheKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:", len(p))
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}
