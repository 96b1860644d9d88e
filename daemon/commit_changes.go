package daemon

// `docker commit --change`: Dockerfile instructions applied to an image
// config, as dockerd's builder/dockerfile.BuildFromConfig does (the
// changes are one Dockerfile, one instruction per line, "\" continues a
// line; only CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD,
// STOPSIGNAL, USER, VOLUME and WORKDIR are allowed).

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"
)

var validCommitCommands = map[string]bool{
	"cmd": true, "entrypoint": true, "env": true, "expose": true, "healthcheck": true,
	"label": true, "onbuild": true, "stopsignal": true, "user": true, "volume": true, "workdir": true,
}

// instruction is one parsed Dockerfile line.
type instruction struct {
	cmd  string // lower case
	rest string // the arguments, trimmed
	orig string
}

// parseInstructions splits changes into instructions: lines joined by a
// trailing backslash, empty lines and comments skipped.
func parseInstructions(changes []string) ([]instruction, error) {
	var out []instruction
	var cont strings.Builder
	lines := strings.Split(strings.Join(changes, "\n"), "\n")
	for i, line := range lines {
		line = strings.TrimRight(line, " \t\r")
		if cont.Len() == 0 {
			t := strings.TrimSpace(line)
			if t == "" || strings.HasPrefix(t, "#") {
				continue
			}
		}
		if strings.HasSuffix(line, `\`) && i < len(lines)-1 {
			cont.WriteString(strings.TrimSuffix(line, `\`))
			continue
		}
		cont.WriteString(line)
		full := strings.TrimSpace(cont.String())
		cont.Reset()
		if full == "" {
			continue
		}
		cmd, rest, _ := strings.Cut(full, " ")
		if j := strings.IndexAny(cmd, "\t"); j >= 0 {
			cmd, rest = cmd[:j], cmd[j+1:]+" "+rest
		}
		out = append(out, instruction{cmd: strings.ToLower(cmd), rest: strings.TrimSpace(rest), orig: full})
	}
	return out, nil
}

// applyChanges applies the instructions to cfg and returns it.
func applyChanges(cfg *container.Config, changes []string) (*container.Config, error) {
	insts, err := parseInstructions(changes)
	if err != nil {
		return nil, err
	}
	for _, in := range insts {
		if !validCommitCommands[in.cmd] {
			return nil, errdefs.InvalidParameter(fmt.Errorf("%s is not a valid change command", in.cmd))
		}
	}
	cmdSet := false
	for _, in := range insts {
		if err := applyInstruction(cfg, in, &cmdSet); err != nil {
			return nil, errdefs.InvalidParameter(err)
		}
	}
	return cfg, nil
}

func applyInstruction(cfg *container.Config, in instruction, cmdSet *bool) error {
	name := strings.ToUpper(in.cmd)
	switch in.cmd {
	case "cmd":
		args, shell, err := parseCommandLine(in.rest)
		if err != nil {
			return err
		}
		cfg.Cmd = shellCommand(cfg, args, shell)
		if len(args) != 0 {
			*cmdSet = true
		}
	case "entrypoint":
		args, shell, err := parseCommandLine(in.rest)
		if err != nil {
			return err
		}
		ep := shellCommand(cfg, args, shell)
		if ep == nil {
			ep = []string{}
		}
		cfg.Entrypoint = ep
		if !*cmdSet {
			cfg.Cmd = nil
		}
	case "env":
		pairs, err := parseNameValues(in.rest, name, cfg.Env)
		if err != nil {
			return err
		}
		for _, kv := range pairs {
			cfg.Env = mergeEnv(cfg.Env, []string{kv[0] + "=" + kv[1]})
		}
	case "label":
		pairs, err := parseNameValues(in.rest, name, cfg.Env)
		if err != nil {
			return err
		}
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range pairs {
			cfg.Labels[kv[0]] = kv[1]
		}
	case "expose":
		words, err := expandWords(in.rest, cfg.Env)
		if err != nil {
			return err
		}
		if len(words) == 0 {
			return errors.New("EXPOSE requires at least one argument")
		}
		ports, _, err := nat.ParsePortSpecs(words)
		if err != nil {
			return err
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = nat.PortSet{}
		}
		for p := range ports {
			cfg.ExposedPorts[p] = struct{}{}
		}
	case "volume":
		vols, err := parseList(in.rest, cfg.Env)
		if err != nil {
			return err
		}
		if len(vols) == 0 {
			return errors.New("VOLUME requires at least one argument")
		}
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range vols {
			if v = strings.TrimSpace(v); v == "" {
				return errors.New("VOLUME specified can not be an empty string")
			}
			cfg.Volumes[v] = struct{}{}
		}
	case "workdir":
		w, err := expandWord(in.rest, cfg.Env)
		if err != nil {
			return err
		}
		if w == "" {
			return errors.New("WORKDIR requires exactly one argument")
		}
		if !path.IsAbs(w) {
			w = path.Join("/", cfg.WorkingDir, w)
		}
		cfg.WorkingDir = path.Clean(w)
	case "user":
		u, err := expandWord(in.rest, cfg.Env)
		if err != nil {
			return err
		}
		if u == "" {
			return errors.New("USER requires exactly one argument")
		}
		cfg.User = u
	case "stopsignal":
		s, err := expandWord(in.rest, cfg.Env)
		if err != nil {
			return err
		}
		if _, err := parseSignal(s); err != nil {
			return err
		}
		cfg.StopSignal = s
	case "onbuild":
		trigger, rest, _ := strings.Cut(in.rest, " ")
		switch strings.ToUpper(trigger) {
		case "":
			return errors.New("ONBUILD requires at least one argument")
		case "ONBUILD":
			return errors.New("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
		case "FROM", "MAINTAINER":
			return fmt.Errorf("%s isn't allowed as an ONBUILD trigger", strings.ToUpper(trigger))
		}
		cfg.OnBuild = append(cfg.OnBuild, strings.TrimSpace(strings.ToUpper(trigger)+" "+rest))
	case "healthcheck":
		hc, err := parseHealthcheck(in.rest)
		if err != nil {
			return err
		}
		cfg.Healthcheck = hc
	}
	return nil
}

// shellCommand is the argv of a CMD/ENTRYPOINT: the JSON form as given,
// the shell form run by the config's shell (default /bin/sh -c).
func shellCommand(cfg *container.Config, args []string, shell bool) []string {
	if !shell {
		return args
	}
	sh := cfg.Shell
	if len(sh) == 0 {
		sh = []string{"/bin/sh", "-c"}
	}
	return append(append([]string{}, sh...), args...)
}

// parseCommandLine parses the JSON (exec) form ["a","b"] or the shell
// form (the whole line, one argument).
func parseCommandLine(rest string) (args []string, shell bool, err error) {
	if strings.HasPrefix(rest, "[") {
		var a []string
		if json.Unmarshal([]byte(rest), &a) == nil {
			return a, false, nil
		}
	}
	if rest == "" {
		return nil, true, nil
	}
	return []string{rest}, true, nil
}

// parseList parses the JSON form or whitespace-separated words (expanded).
func parseList(rest string, env []string) ([]string, error) {
	if strings.HasPrefix(rest, "[") {
		var a []string
		if json.Unmarshal([]byte(rest), &a) == nil {
			return a, nil
		}
	}
	return expandWords(rest, env)
}

// parseNameValues parses ENV and LABEL arguments: name=value pairs (values
// may be quoted), or the legacy "name value with spaces" form.
func parseNameValues(rest, cmd string, env []string) ([][2]string, error) {
	words, err := rawWords(rest)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("%s requires at least one argument", cmd)
	}
	if !strings.Contains(words[0], "=") {
		// Legacy form: the name, then everything else as the value.
		parts := strings.SplitN(strings.TrimSpace(rest), " ", 2)
		if len(parts) < 2 || strings.TrimSpace(parts[1]) == "" {
			return nil, fmt.Errorf("%s must have two arguments", cmd)
		}
		name, err := expandWord(parts[0], env)
		if err != nil {
			return nil, err
		}
		val, err := expandWord(strings.TrimSpace(parts[1]), env)
		if err != nil {
			return nil, err
		}
		return [][2]string{{name, val}}, nil
	}
	var out [][2]string
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return nil, fmt.Errorf("Syntax error - can't find = in %q. Must be of the form: name=value", w)
		}
		name, err := expandWord(k, env)
		if err != nil {
			return nil, err
		}
		if name == "" {
			return nil, fmt.Errorf("%s names can not be blank", cmd)
		}
		val, err := expandWord(v, env)
		if err != nil {
			return nil, err
		}
		out = append(out, [2]string{name, val})
		if cmd == "ENV" {
			// Later pairs see the earlier ones.
			env = mergeEnv(env, []string{name + "=" + val})
		}
	}
	return out, nil
}

// rawWords splits on unquoted whitespace, keeping quotes and escapes in
// the words (they are processed by expandWord).
func rawWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\' && quote != '\'':
			cur.WriteRune(r)
			escaped = true
			inWord = true
		case quote != 0:
			cur.WriteRune(r)
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			cur.WriteRune(r)
			quote = r
			inWord = true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unexpected end of statement while looking for matching %c", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// expandWords splits and expands each word.
func expandWords(s string, env []string) ([]string, error) {
	words, err := rawWords(s)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(words))
	for _, w := range words {
		e, err := expandWord(w, env)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// expandWord processes one word as the Dockerfile shell lexer does: quotes
// are removed ('...' literal, "..." with \" \\ \$ escapes), a backslash
// escapes the next character, and $VAR, ${VAR}, ${VAR:-default} and
// ${VAR:+alternative} are replaced from env.
func expandWord(s string, env []string) (string, error) {
	var b strings.Builder
	rs := []rune(s)
	lookup := func(name string) (string, bool) { return envValue(env, name) }
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch r {
		case '\\':
			if i+1 < len(rs) {
				i++
				b.WriteRune(rs[i])
			}
		case '\'':
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j >= len(rs) {
				return "", errors.New("unexpected end of statement while looking for matching single-quote")
			}
			b.WriteString(string(rs[i+1 : j]))
			i = j
		case '"':
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				switch {
				case rs[j] == '\\' && j+1 < len(rs) && strings.ContainsRune(`"\$`, rs[j+1]):
					j++
					b.WriteRune(rs[j])
				case rs[j] == '$':
					v, n, err := expandVar(rs[j:], lookup)
					if err != nil {
						return "", err
					}
					b.WriteString(v)
					j += n - 1
				default:
					b.WriteRune(rs[j])
				}
			}
			if j >= len(rs) {
				return "", errors.New("unexpected end of statement while looking for matching double-quote")
			}
			i = j
		case '$':
			v, n, err := expandVar(rs[i:], lookup)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i += n - 1
		default:
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}

// expandVar expands the variable reference at the start of rs ("$" ...)
// and returns its value and how many runes it took.
func expandVar(rs []rune, lookup func(string) (string, bool)) (string, int, error) {
	isName := func(r rune, first bool) bool {
		return r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (!first && r >= '0' && r <= '9')
	}
	if len(rs) < 2 {
		return "$", 1, nil
	}
	if rs[1] != '{' {
		j := 1
		for j < len(rs) && isName(rs[j], j == 1) {
			j++
		}
		if j == 1 {
			return "$", 1, nil
		}
		v, _ := lookup(string(rs[1:j]))
		return v, j, nil
	}
	end := -1
	for j := 2; j < len(rs); j++ {
		if rs[j] == '}' {
			end = j
			break
		}
	}
	if end < 0 {
		return "", 0, errors.New("missing '}' in variable substitution")
	}
	body := string(rs[2:end])
	name, mod, word := body, "", ""
	if i := strings.Index(body, ":"); i >= 0 && i+1 < len(body) {
		name, mod, word = body[:i], body[i:i+2], body[i+2:]
	}
	v, set := lookup(name)
	switch mod {
	case "":
	case ":-":
		if !set || v == "" {
			v = word
		}
	case ":+":
		if set && v != "" {
			v = word
		} else {
			v = ""
		}
	default:
		return "", 0, fmt.Errorf("unsupported modifier (%s) in substitution", mod)
	}
	return v, end + 1, nil
}

// envValue returns the value of key in a KEY=value list (the last wins).
func envValue(env []string, key string) (string, bool) {
	val, ok := "", false
	for _, kv := range env {
		if k, v, found := strings.Cut(kv, "="); found && k == key {
			val, ok = v, true
		}
	}
	return val, ok
}

// parseHealthcheck parses HEALTHCHECK NONE or HEALTHCHECK [options] CMD ...
func parseHealthcheck(rest string) (*container.HealthConfig, error) {
	words, err := rawWords(rest)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, errors.New("HEALTHCHECK requires an argument")
	}
	if strings.EqualFold(words[0], "NONE") {
		if len(words) > 1 {
			return nil, errors.New("HEALTHCHECK NONE takes no arguments")
		}
		return &container.HealthConfig{Test: []string{"NONE"}}, nil
	}
	hc := &container.HealthConfig{}
	i := 0
	for ; i < len(words) && strings.HasPrefix(words[i], "--"); i++ {
		k, v, ok := strings.Cut(strings.TrimPrefix(words[i], "--"), "=")
		if !ok {
			return nil, fmt.Errorf("missing value for flag: --%s", k)
		}
		switch k {
		case "interval", "timeout", "start-period", "start-interval":
			d, err := time.ParseDuration(v)
			if err != nil {
				return nil, err
			}
			switch k {
			case "interval":
				hc.Interval = d
			case "timeout":
				hc.Timeout = d
			case "start-period":
				hc.StartPeriod = d
			default:
				hc.StartInterval = d
			}
		case "retries":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("invalid --retries %q", v)
			}
			hc.Retries = n
		default:
			return nil, fmt.Errorf("unknown flag: --%s", k)
		}
	}
	if i >= len(words) || !strings.EqualFold(words[i], "CMD") {
		return nil, errors.New("Unknown type in HEALTHCHECK (try CMD)")
	}
	// The command is the rest of the line after CMD.
	idx := strings.Index(strings.ToUpper(rest), "CMD")
	cmdline := strings.TrimSpace(rest[idx+3:])
	args, shell, err := parseCommandLine(cmdline)
	if err != nil {
		return nil, err
	}
	if len(args) == 0 {
		return nil, errors.New("Missing command after HEALTHCHECK CMD")
	}
	if shell {
		hc.Test = []string{"CMD-SHELL", args[0]}
	} else {
		hc.Test = append([]string{"CMD"}, args...)
	}
	return hc, nil
}
