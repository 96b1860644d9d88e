package builder

import (
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// validCommitCommands are the instructions `docker commit --change` and
// `docker import --change` accept (dockerd's list).
var validCommitCommands = map[string]bool{
	"cmd": true, "entrypoint": true, "env": true, "expose": true, "healthcheck": true,
	"label": true, "onbuild": true, "stopsignal": true, "user": true, "volume": true, "workdir": true,
}

// ApplyChanges applies Dockerfile instructions (`docker commit --change`,
// `docker import --change`: one Dockerfile, an instruction per line) to
// cfg, with the builder's parser and the same code that applies them in a
// build, and returns cfg. Errors are errdefs.InvalidParameter.
func ApplyChanges(cfg *container.Config, changes []string) (*container.Config, error) {
	if len(changes) == 0 {
		return cfg, nil
	}
	res, err := parser.Parse(strings.NewReader(strings.Join(changes, "\n")))
	if err != nil {
		if strings.Contains(err.Error(), "file with no instructions") {
			return cfg, nil
		}
		return nil, errdefs.InvalidParameter(err)
	}
	st := &stage{config: cfg}
	shlex := shell.NewLex(res.EscapeToken)
	for _, n := range res.AST.Children {
		name := strings.ToLower(n.Value)
		if !validCommitCommands[name] {
			return nil, errdefs.InvalidParameter(fmt.Errorf("%s is not a valid change command", name))
		}
		cmd, err := instructions.ParseCommand(n)
		if err != nil {
			return nil, errdefs.InvalidParameter(err)
		}
		if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
			env := st.config.Env
			if err := ex.Expand(func(word string) (string, error) {
				out, _, err := shlex.ProcessWord(word, shell.EnvsFromSlice(env))
				return out, err
			}); err != nil {
				return nil, errdefs.InvalidParameter(err)
			}
		}
		if _, err := applyConfig(st, cmd, shlex, st.config.Env, func(string) {}); err != nil {
			return nil, err
		}
	}
	return st.config, nil
}
