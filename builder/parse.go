package builder

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/docker/docker/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// dockerfile is a parsed Dockerfile, cut at the target stage.
type dockerfile struct {
	stages      []instructions.Stage
	metaArgs    []instructions.ArgCommand
	escapeToken rune
	warnings    []string
}

// parseDockerfile parses with BuildKit's parser and instruction set (as
// dockerd's classic builder does) so that every syntax error is a 400
// before anything runs.
func parseDockerfile(src []byte, target string) (*dockerfile, error) {
	if len(src) == 0 {
		return nil, errdefs.InvalidParameter(errors.New("the Dockerfile (Dockerfile) cannot be empty"))
	}
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return nil, errdefs.InvalidParameter(fmt.Errorf("failed to parse Dockerfile: %w", err))
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, errdefs.InvalidParameter(fmt.Errorf("failed to parse Dockerfile: %w", err))
	}
	if len(stages) == 0 {
		return nil, errdefs.InvalidParameter(errors.New("failed to parse Dockerfile: file with no instructions"))
	}
	df := &dockerfile{stages: stages, metaArgs: metaArgs, escapeToken: res.EscapeToken}
	for _, w := range res.Warnings {
		df.warnings = append(df.warnings, w.Short)
	}
	if target != "" {
		i := stageIndex(stages, target)
		if i < 0 {
			return nil, errdefs.InvalidParameter(fmt.Errorf("failed to reach build target %s in Dockerfile", target))
		}
		df.stages = stages[:i+1]
	}
	return df, nil
}

// stageIndex finds a stage by name (case-insensitive, as FROM ... AS is).
func stageIndex(stages []instructions.Stage, name string) int {
	for i, s := range stages {
		if s.Name != "" && strings.EqualFold(s.Name, name) {
			return i
		}
	}
	return -1
}

// addLabels appends the build's --label values to the last stage as one
// LABEL step per label, as dockerd's classic builder does.
func (df *dockerfile) addLabels(labels map[string]string) {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	last := &df.stages[len(df.stages)-1]
	for _, k := range keys {
		last.AddCommand(instructions.NewLabelCommand(k, labels[k], true))
	}
}

// steps is the number of steps printed as "Step N/M".
func (df *dockerfile) steps() int {
	n := len(df.metaArgs)
	for _, s := range df.stages {
		n += 1 + len(s.Commands)
	}
	return n
}
