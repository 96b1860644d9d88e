package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/docker/docker/errdefs"
)

// containerStore indexes containers by ID and name. It holds no container
// locks; it only maps names to *Container.
type containerStore struct {
	mu     sync.RWMutex
	byID   map[string]*Container
	byName map[string]string // name -> id
}

func newContainerStore() *containerStore {
	return &containerStore{byID: map[string]*Container{}, byName: map[string]string{}}
}

// validName is dockerd's container name rule.
var validName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// reserve claims name for id; it fails with a Conflict if taken.
func (s *containerStore) reserve(name, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if other, ok := s.byName[name]; ok && other != id {
		return errdefs.Conflict(fmt.Errorf("Conflict. The container name \"/%s\" is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.", name, other))
	}
	s.byName[name] = id
	return nil
}

func (s *containerStore) release(name string) {
	s.mu.Lock()
	delete(s.byName, name)
	s.mu.Unlock()
}

func (s *containerStore) add(c *Container) {
	s.mu.Lock()
	s.byID[c.ID] = c
	s.byName[c.Name] = c.ID
	s.mu.Unlock()
}

func (s *containerStore) remove(c *Container) {
	s.mu.Lock()
	delete(s.byID, c.ID)
	if s.byName[c.Name] == c.ID {
		delete(s.byName, c.Name)
	}
	s.mu.Unlock()
}

// rename moves c's name; c.Name is updated by the caller under c.mu.
func (s *containerStore) rename(c *Container, oldName, newName string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if other, ok := s.byName[newName]; ok && other != c.ID {
		return errdefs.Conflict(fmt.Errorf("Error when allocating new name: Conflict. The container name \"/%s\" is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.", newName, other))
	}
	delete(s.byName, oldName)
	s.byName[newName] = c.ID
	return nil
}

// get resolves a full ID, a name (with or without "/") or a unique ID
// prefix, in that order, as dockerd does.
func (s *containerStore) get(ref string) (*Container, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ref == "" {
		return nil, errdefs.NotFound(fmt.Errorf("No such container: %s", ref))
	}
	if c, ok := s.byID[ref]; ok {
		return c, nil
	}
	if id, ok := s.byName[strings.TrimPrefix(ref, "/")]; ok {
		return s.byID[id], nil
	}
	var found *Container
	for id, c := range s.byID {
		if strings.HasPrefix(id, ref) {
			if found != nil {
				return nil, errdefs.InvalidParameter(fmt.Errorf("multiple IDs found with provided prefix: %s", ref))
			}
			found = c
		}
	}
	if found == nil {
		return nil, errdefs.NotFound(fmt.Errorf("No such container: %s", ref))
	}
	return found, nil
}

// all returns the containers, newest first (the order `docker ps` shows).
func (s *containerStore) all() []*Container {
	s.mu.RLock()
	list := make([]*Container, 0, len(s.byID))
	for _, c := range s.byID {
		list = append(list, c)
	}
	s.mu.RUnlock()
	sort.Slice(list, func(i, j int) bool {
		if list[i].Created.Equal(list[j].Created) {
			return list[i].ID < list[j].ID
		}
		return list[i].Created.After(list[j].Created)
	})
	return list
}

func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// Words for generated names ("brave_lovelace"): adjectives and people
// who shaped operating systems and virtualization.
var (
	nameAdjectives = []string{
		"agile", "bold", "brave", "bright", "calm", "clever", "crisp", "daring", "deft", "eager",
		"fair", "fond", "gentle", "glad", "happy", "keen", "kind", "lively", "lucid", "merry",
		"nimble", "noble", "patient", "proud", "quick", "quiet", "rapid", "serene", "sharp", "sleek",
		"solid", "steady", "swift", "tidy", "upbeat", "vivid", "warm", "wise", "witty", "zealous",
	}
	nameSurnames = []string{
		"allen", "babbage", "backus", "bellard", "bosworth", "cerf", "codd", "corbato", "cray", "cutler",
		"dijkstra", "engelbart", "goldberg", "hamilton", "hopper", "kahan", "kay", "kernighan", "knuth", "lamport",
		"liskov", "lovelace", "mccarthy", "milner", "popek", "ritchie", "rosenblum", "shannon", "sutherland", "thompson",
		"torvalds", "turing", "wilkes", "wirth", "wozniak",
	}
)

func randIndex(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		panic(err)
	}
	return int(v.Int64())
}

// generateName picks a free "adjective_surname", adding a digit after a few
// collisions as dockerd does.
func (s *containerStore) generateName(id string) (string, error) {
	for i := 0; i < 10; i++ {
		name := nameAdjectives[randIndex(len(nameAdjectives))] + "_" + nameSurnames[randIndex(len(nameSurnames))]
		if i > 2 {
			name = fmt.Sprintf("%s%d", name, randIndex(10))
		}
		if err := s.reserve(name, id); err == nil {
			return name, nil
		}
	}
	name := "jevm_" + id[:12]
	return name, s.reserve(name, id)
}
