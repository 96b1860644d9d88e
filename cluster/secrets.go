package cluster

import (
	"context"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/errdefs"
	swarmapi "github.com/moby/swarmkit/v2/api"
)

// Secrets and configs (docker secret, docker config): kept by the
// managers in the raft store (encrypted at rest), sent by the dispatcher
// to the nodes whose tasks use them, where the executor holds them in
// memory and the engine hands them to the task's VM at start
// (controller.go's taskFiles). A secret's data is never returned; a
// config's is.

// listFilters reads the filters dockerd takes for secrets and configs: names
// (exact), name (prefix), id (prefix), label.
func listFilters(f filters.Args) (names, namePrefixes, idPrefixes []string, labels map[string]string, err error) {
	if err := f.Validate(map[string]bool{"names": true, "name": true, "id": true, "label": true}); err != nil {
		return nil, nil, nil, nil, errdefs.InvalidParameter(err)
	}
	labels = map[string]string{}
	for _, l := range f.Get("label") {
		k, v, _ := strings.Cut(l, "=")
		labels[k] = v
	}
	return f.Get("names"), f.Get("name"), f.Get("id"), labels, nil
}

// byRef finds one object by full ID, name or ID prefix, as dockerd does.
func byRef[T any](kind, ref string, get func() (T, error), list func() ([]T, error), id, name func(T) string) (T, error) {
	var zero T
	if o, err := get(); err == nil {
		return o, nil
	}
	all, err := list()
	if err != nil {
		return zero, err
	}
	var found []T
	for _, o := range all {
		if name(o) == ref {
			return o, nil
		}
		if strings.HasPrefix(id(o), ref) {
			found = append(found, o)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return zero, errdefs.NotFound(fmt.Errorf("%s %s not found", kind, ref))
	}
	return zero, errdefs.InvalidParameter(fmt.Errorf("%s %s is ambiguous (%d matches found)", kind, ref, len(found)))
}

func toDriver(d *swarm.Driver) *swarmapi.Driver {
	if d == nil {
		return nil
	}
	return &swarmapi.Driver{Name: d.Name, Options: d.Options}
}

func fromDriver(d *swarmapi.Driver) *swarm.Driver {
	if d == nil {
		return nil
	}
	return &swarm.Driver{Name: d.Name, Options: d.Options}
}

// CreateSecret stores a new secret (POST /secrets/create).
func (c *Cluster) CreateSecret(ctx context.Context, spec swarm.SecretSpec) (string, error) {
	control, err := c.controlClient()
	if err != nil {
		return "", err
	}
	r, err := control.CreateSecret(ctx, &swarmapi.CreateSecretRequest{Spec: &swarmapi.SecretSpec{
		Annotations: swarmapi.Annotations{Name: spec.Name, Labels: spec.Labels},
		Data:        spec.Data,
		Driver:      toDriver(spec.Driver),
		Templating:  toDriver(spec.Templating),
	}})
	if err != nil {
		return "", fromGRPC(err)
	}
	return r.Secret.ID, nil
}

func toSecret(s *swarmapi.Secret) swarm.Secret {
	return swarm.Secret{ID: s.ID, Meta: toMeta(s.Meta), Spec: swarm.SecretSpec{
		Annotations: swarm.Annotations{Name: s.Spec.Annotations.Name, Labels: s.Spec.Annotations.Labels},
		Driver:      fromDriver(s.Spec.Driver),
		Templating:  fromDriver(s.Spec.Templating),
		// Data: never returned.
	}}
}

// Secrets lists the secrets (GET /secrets).
func (c *Cluster) Secrets(ctx context.Context, f filters.Args) ([]swarm.Secret, error) {
	names, prefixes, ids, labels, err := listFilters(f)
	if err != nil {
		return nil, err
	}
	control, err := c.controlClient()
	if err != nil {
		return nil, err
	}
	r, err := control.ListSecrets(ctx, &swarmapi.ListSecretsRequest{Filters: &swarmapi.ListSecretsRequest_Filters{Names: names, NamePrefixes: prefixes, IDPrefixes: ids, Labels: labels}})
	if err != nil {
		return nil, fromGRPC(err)
	}
	out := []swarm.Secret{}
	for _, s := range r.Secrets {
		out = append(out, toSecret(s))
	}
	return out, nil
}

func (c *Cluster) secretByRef(ctx context.Context, control swarmapi.ControlClient, ref string) (*swarmapi.Secret, error) {
	return byRef("secret", ref,
		func() (*swarmapi.Secret, error) {
			r, err := control.GetSecret(ctx, &swarmapi.GetSecretRequest{SecretID: ref})
			if err != nil {
				return nil, err
			}
			return r.Secret, nil
		},
		func() ([]*swarmapi.Secret, error) {
			r, err := control.ListSecrets(ctx, &swarmapi.ListSecretsRequest{})
			if err != nil {
				return nil, fromGRPC(err)
			}
			return r.Secrets, nil
		},
		func(s *swarmapi.Secret) string { return s.ID },
		func(s *swarmapi.Secret) string { return s.Spec.Annotations.Name })
}

// Secret returns one secret, without its data (GET /secrets/{id}).
func (c *Cluster) Secret(ctx context.Context, ref string) (swarm.Secret, error) {
	control, err := c.controlClient()
	if err != nil {
		return swarm.Secret{}, err
	}
	s, err := c.secretByRef(ctx, control, ref)
	if err != nil {
		return swarm.Secret{}, err
	}
	return toSecret(s), nil
}

// UpdateSecret changes a secret's spec at version; SwarmKit takes only
// label changes (POST /secrets/{id}/update).
func (c *Cluster) UpdateSecret(ctx context.Context, ref string, version uint64, spec swarm.SecretSpec) error {
	control, err := c.controlClient()
	if err != nil {
		return err
	}
	s, err := c.secretByRef(ctx, control, ref)
	if err != nil {
		return err
	}
	_, err = control.UpdateSecret(ctx, &swarmapi.UpdateSecretRequest{
		SecretID:      s.ID,
		SecretVersion: &swarmapi.Version{Index: version},
		Spec: &swarmapi.SecretSpec{
			Annotations: swarmapi.Annotations{Name: spec.Name, Labels: spec.Labels},
			Data:        spec.Data,
			Driver:      toDriver(spec.Driver),
			Templating:  toDriver(spec.Templating),
		},
	})
	return fromGRPC(err)
}

// RemoveSecret removes a secret no service uses (DELETE /secrets/{id}).
func (c *Cluster) RemoveSecret(ctx context.Context, ref string) error {
	control, err := c.controlClient()
	if err != nil {
		return err
	}
	s, err := c.secretByRef(ctx, control, ref)
	if err != nil {
		return err
	}
	_, err = control.RemoveSecret(ctx, &swarmapi.RemoveSecretRequest{SecretID: s.ID})
	return fromGRPC(err)
}

// CreateConfig stores a new config (POST /configs/create).
func (c *Cluster) CreateConfig(ctx context.Context, spec swarm.ConfigSpec) (string, error) {
	control, err := c.controlClient()
	if err != nil {
		return "", err
	}
	r, err := control.CreateConfig(ctx, &swarmapi.CreateConfigRequest{Spec: &swarmapi.ConfigSpec{
		Annotations: swarmapi.Annotations{Name: spec.Name, Labels: spec.Labels},
		Data:        spec.Data,
		Templating:  toDriver(spec.Templating),
	}})
	if err != nil {
		return "", fromGRPC(err)
	}
	return r.Config.ID, nil
}

func toConfig(s *swarmapi.Config) swarm.Config {
	return swarm.Config{ID: s.ID, Meta: toMeta(s.Meta), Spec: swarm.ConfigSpec{
		Annotations: swarm.Annotations{Name: s.Spec.Annotations.Name, Labels: s.Spec.Annotations.Labels},
		Data:        s.Spec.Data,
		Templating:  fromDriver(s.Spec.Templating),
	}}
}

// Configs lists the configs (GET /configs).
func (c *Cluster) Configs(ctx context.Context, f filters.Args) ([]swarm.Config, error) {
	names, prefixes, ids, labels, err := listFilters(f)
	if err != nil {
		return nil, err
	}
	control, err := c.controlClient()
	if err != nil {
		return nil, err
	}
	r, err := control.ListConfigs(ctx, &swarmapi.ListConfigsRequest{Filters: &swarmapi.ListConfigsRequest_Filters{Names: names, NamePrefixes: prefixes, IDPrefixes: ids, Labels: labels}})
	if err != nil {
		return nil, fromGRPC(err)
	}
	out := []swarm.Config{}
	for _, s := range r.Configs {
		out = append(out, toConfig(s))
	}
	return out, nil
}

func (c *Cluster) configByRef(ctx context.Context, control swarmapi.ControlClient, ref string) (*swarmapi.Config, error) {
	return byRef("config", ref,
		func() (*swarmapi.Config, error) {
			r, err := control.GetConfig(ctx, &swarmapi.GetConfigRequest{ConfigID: ref})
			if err != nil {
				return nil, err
			}
			return r.Config, nil
		},
		func() ([]*swarmapi.Config, error) {
			r, err := control.ListConfigs(ctx, &swarmapi.ListConfigsRequest{})
			if err != nil {
				return nil, fromGRPC(err)
			}
			return r.Configs, nil
		},
		func(s *swarmapi.Config) string { return s.ID },
		func(s *swarmapi.Config) string { return s.Spec.Annotations.Name })
}

// Config returns one config, with its data (GET /configs/{id}).
func (c *Cluster) Config(ctx context.Context, ref string) (swarm.Config, error) {
	control, err := c.controlClient()
	if err != nil {
		return swarm.Config{}, err
	}
	s, err := c.configByRef(ctx, control, ref)
	if err != nil {
		return swarm.Config{}, err
	}
	return toConfig(s), nil
}

// UpdateConfig changes a config's spec at version; SwarmKit takes only
// label changes (POST /configs/{id}/update).
func (c *Cluster) UpdateConfig(ctx context.Context, ref string, version uint64, spec swarm.ConfigSpec) error {
	control, err := c.controlClient()
	if err != nil {
		return err
	}
	s, err := c.configByRef(ctx, control, ref)
	if err != nil {
		return err
	}
	_, err = control.UpdateConfig(ctx, &swarmapi.UpdateConfigRequest{
		ConfigID:      s.ID,
		ConfigVersion: &swarmapi.Version{Index: version},
		Spec: &swarmapi.ConfigSpec{
			Annotations: swarmapi.Annotations{Name: spec.Name, Labels: spec.Labels},
			Data:        spec.Data,
			Templating:  toDriver(spec.Templating),
		},
	})
	return fromGRPC(err)
}

// RemoveConfig removes a config no service uses (DELETE /configs/{id}).
func (c *Cluster) RemoveConfig(ctx context.Context, ref string) error {
	control, err := c.controlClient()
	if err != nil {
		return err
	}
	s, err := c.configByRef(ctx, control, ref)
	if err != nil {
		return err
	}
	_, err = control.RemoveConfig(ctx, &swarmapi.RemoveConfigRequest{ConfigID: s.ID})
	return fromGRPC(err)
}
