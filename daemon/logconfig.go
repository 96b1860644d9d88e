package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/daemon/logger/templates"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-units"
)

// Logging drivers jevm implements. json-file is dockerd's format; local
// keeps dockerd's local driver's options and defaults but stores the same
// JSON lines as json-file (dockerd's local driver writes protobuf; its
// files are not an API, so nothing outside jevm reads them); none stores
// nothing.
const (
	logDriverJSONFile = "json-file"
	logDriverLocal    = "local"
	logDriverNone     = "none"
)

// Drivers dockerd has that jevm does not: refused with a clearer message
// than dockerd's "no log driver named ... is registered".
var dockerLogDrivers = map[string]bool{
	"awslogs": true, "etwlogs": true, "fluentd": true, "gcplogs": true, "gelf": true,
	"journald": true, "logentries": true, "splunk": true, "syslog": true,
}

// Options every driver but none accepts (dockerd's builtInLogOpts and the
// log cache's options). jevm's drivers all support reading and write
// synchronously, so they are validated and otherwise have no effect.
var builtInLogOpts = map[string]bool{
	"mode": true, "max-buffer-size": true,
	"cache-disabled": true, "cache-max-file": true, "cache-max-size": true, "cache-compress": true,
}

var jsonFileLogOpts = map[string]bool{
	"max-file": true, "max-size": true, "compress": true, "labels": true,
	"labels-regex": true, "env": true, "env-regex": true, "tag": true,
}

var localLogOpts = map[string]bool{"max-file": true, "max-size": true, "compress": true}

// dockerd's local driver defaults.
const (
	localDefaultMaxSize  int64 = 20 * 1024 * 1024
	localDefaultMaxFiles       = 5
)

// ValidateLogConfig checks a logging configuration: the daemon's default
// (--log-driver/--log-opt, daemon.json "log-driver"/"log-opts") at
// start-up, and a container's effective one at create. An empty Type is
// json-file.
func ValidateLogConfig(lc container.LogConfig) error {
	typ := lc.Type
	if typ == "" {
		typ = logDriverJSONFile
	}
	_, err := parseLogSettings(typ, lc.Config)
	return err
}

// normalizeDefaultLogConfig gives the daemon's default log config its
// defaults: json-file, no options.
func normalizeDefaultLogConfig(lc container.LogConfig) container.LogConfig {
	out := container.LogConfig{Type: lc.Type, Config: map[string]string{}}
	if out.Type == "" {
		out.Type = logDriverJSONFile
	}
	for k, v := range lc.Config {
		out.Config[k] = v
	}
	return out
}

func (d *Daemon) defaultLogConfig() container.LogConfig {
	return normalizeDefaultLogConfig(d.cfg.DefaultLogConfig)
}

// resolveLogConfig is dockerd's mergeAndVerifyLogConfig: the container's
// driver, else the daemon's; the daemon's options fill in the ones the
// container does not set when both use the same driver (the log cache's
// cache-* options always); the result is validated and is the container's
// log config for good.
func resolveLogConfig(user, def container.LogConfig) (container.LogConfig, error) {
	def = normalizeDefaultLogConfig(def)
	out := container.LogConfig{Type: user.Type, Config: map[string]string{}}
	for k, v := range user.Config {
		out.Config[k] = v
	}
	if out.Type == "" {
		out.Type = def.Type
	}
	for k, v := range def.Config {
		if _, set := out.Config[k]; set {
			continue
		}
		if out.Type == def.Type || strings.HasPrefix(k, "cache-") {
			out.Config[k] = v
		}
	}
	if _, err := parseLogSettings(out.Type, out.Config); err != nil {
		return container.LogConfig{}, errdefs.InvalidParameter(err)
	}
	return out, nil
}

// logConfig is the container's effective log config. Containers created
// before jevm had logging drivers have none recorded: they use json-file.
func (c *Container) logConfig() container.LogConfig {
	lc := container.LogConfig{Config: map[string]string{}}
	if c.HostConfig != nil {
		lc.Type = c.HostConfig.LogConfig.Type
		for k, v := range c.HostConfig.LogConfig.Config {
			lc.Config[k] = v
		}
	}
	if lc.Type == "" {
		lc.Type = logDriverJSONFile
	}
	return lc
}

// logFilePath is where the container's driver stores its log: the json-file
// log (container-json.log, inspect's LogPath) or, as dockerd does,
// local-logs/container.log for local, which inspect does not show.
func (c *Container) logFilePath() string {
	if c.logConfig().Type == logDriverLocal {
		return filepath.Join(c.Dir, "local-logs", "container.log")
	}
	return c.logPath()
}

// logSettings are a log config's parsed options.
type logSettings struct {
	driver   string
	maxSize  int64 // -1: no rotation
	maxFiles int   // the current file and maxFiles-1 rotated ones
	compress bool  // gzip rotated files
	// Attributes for json-file's "attrs" (labels, env, tag).
	labels, env           []string
	labelsRegex, envRegex *regexp.Regexp
	tag                   string // template; "" for none
}

// parseLogSettings validates a driver and its options as dockerd does
// (logger.ValidateLogOpts, then the driver's checks), with dockerd's
// messages. dockerd checks option values only when the container starts;
// jevm checks them at create.
func parseLogSettings(driver string, cfg map[string]string) (logSettings, error) {
	s := logSettings{driver: driver, maxSize: -1, maxFiles: 1}
	switch driver {
	case logDriverNone:
		return s, nil // dockerd accepts (and ignores) any option with none
	case logDriverJSONFile, logDriverLocal:
	default:
		if dockerLogDrivers[driver] {
			return s, fmt.Errorf("logging driver %q is not supported by jevm: use json-file, local or none", driver)
		}
		return s, fmt.Errorf("logger: no log driver named '%s' is registered (jevm supports json-file, local and none)", driver)
	}

	switch container.LogMode(cfg["mode"]) {
	case container.LogModeBlocking, container.LogModeNonBlock, container.LogModeUnset:
	default:
		return s, fmt.Errorf("logger: logging mode not supported: %s", cfg["mode"])
	}
	if v, ok := cfg["max-buffer-size"]; ok {
		if container.LogMode(cfg["mode"]) != container.LogModeNonBlock {
			return s, fmt.Errorf("logger: max-buffer-size option is only supported with 'mode=%s'", container.LogModeNonBlock)
		}
		if _, err := units.RAMInBytes(v); err != nil {
			return s, fmt.Errorf("error parsing option max-buffer-size: %w", err)
		}
	}
	if v := cfg["cache-disabled"]; v != "" {
		if _, err := strconv.ParseBool(v); err != nil {
			return s, fmt.Errorf("invalid value for option cache-disabled: %s", v)
		}
	}
	// Driver options, in a stable order so the first bad one is reported
	// the same way every time.
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		if !builtInLogOpts[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if driver == logDriverLocal {
		return s, parseLocalSettings(&s, keys, cfg)
	}
	return s, parseJSONFileSettings(&s, keys, cfg)
}

// parseJSONFileSettings is jsonfilelog.ValidateLogOpt and jsonfilelog.New.
func parseJSONFileSettings(s *logSettings, keys []string, cfg map[string]string) error {
	for _, k := range keys {
		if !jsonFileLogOpts[k] {
			return fmt.Errorf("unknown log opt '%s' for json-file log driver", k)
		}
	}
	if v, ok := cfg["max-size"]; ok {
		n, err := units.FromHumanSize(v)
		if err != nil {
			return err
		}
		if n <= 0 {
			return errors.New("max-size must be a positive number")
		}
		s.maxSize = n
	}
	if v, ok := cfg["max-file"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return err
		}
		if n < 1 {
			return errors.New("max-file cannot be less than 1")
		}
		s.maxFiles = n
	}
	if v, ok := cfg["compress"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return err
		}
		if b && (s.maxFiles == 1 || s.maxSize == -1) {
			return errors.New("compress cannot be true when max-file is less than 2 or max-size is not set")
		}
		s.compress = b
	}
	if v := cfg["labels"]; v != "" {
		s.labels = strings.Split(v, ",")
	}
	if v := cfg["env"]; v != "" {
		s.env = strings.Split(v, ",")
	}
	var err error
	if v := cfg["labels-regex"]; v != "" {
		if s.labelsRegex, err = regexp.Compile(v); err != nil {
			return err
		}
	}
	if v := cfg["env-regex"]; v != "" {
		if s.envRegex, err = regexp.Compile(v); err != nil {
			return err
		}
	}
	if s.tag = cfg["tag"]; s.tag != "" {
		// Parse and run it once on a made-up container, so that a bad
		// template fails the create, not the start.
		probe := logTagInfo{ContainerID: strings.Repeat("0", 64), ContainerImageID: "sha256:" + strings.Repeat("0", 64)}
		if _, err := probe.render(s.tag); err != nil {
			return err
		}
	}
	return nil
}

// parseLocalSettings is local.ValidateLogOpt, local.New and validateConfig.
func parseLocalSettings(s *logSettings, keys []string, cfg map[string]string) error {
	for _, k := range keys {
		if !localLogOpts[k] {
			return fmt.Errorf("unknown log opt '%s' for log driver %s", k, logDriverLocal)
		}
	}
	s.maxSize, s.maxFiles, s.compress = localDefaultMaxSize, localDefaultMaxFiles, true
	if v, ok := cfg["max-size"]; ok {
		n, err := units.FromHumanSize(v)
		if err != nil {
			return fmt.Errorf("invalid value for max-size: %s: %w", v, err)
		}
		s.maxSize = n
	}
	if v, ok := cfg["max-file"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("invalid value for max-file: %s: %w", v, err)
		}
		s.maxFiles = n
	}
	if v, ok := cfg["compress"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("error reading compress log option: %w", err)
		}
		s.compress = b
	}
	switch {
	case s.maxSize < 0:
		return errors.New("max size should be a positive number")
	case s.maxFiles < 0:
		return errors.New("max file count cannot be less than 0")
	case s.compress && s.maxFiles <= 1:
		return errors.New("compression cannot be enabled when max file count is 1")
	}
	if s.maxFiles == 0 {
		s.maxFiles = 1 // dockerd's log file treats 0 as 1
	}
	return nil
}

// logTagInfo is what a tag template sees: dockerd's logger.Info.
type logTagInfo struct {
	Config              map[string]string
	ContainerID         string
	ContainerName       string
	ContainerEntrypoint string
	ContainerArgs       []string
	ContainerImageID    string
	ContainerImageName  string
	ContainerCreated    time.Time
	ContainerEnv        []string
	ContainerLabels     map[string]string
	LogPath             string
	DaemonName          string
}

func (i *logTagInfo) ID() string          { return prefix12(i.ContainerID) }
func (i *logTagInfo) FullID() string      { return i.ContainerID }
func (i *logTagInfo) Name() string        { return strings.TrimPrefix(i.ContainerName, "/") }
func (i *logTagInfo) ImageID() string     { return prefix12(i.ContainerImageID) }
func (i *logTagInfo) ImageFullID() string { return i.ContainerImageID }
func (i *logTagInfo) ImageName() string   { return i.ContainerImageName }
func (i *logTagInfo) Command() string {
	return strings.Join(append([]string{i.ContainerEntrypoint}, i.ContainerArgs...), " ")
}

// Hostname is the host's name, as with dockerd.
func (i *logTagInfo) Hostname() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("logger: can not resolve hostname: %v", err)
	}
	return h, nil
}

// render runs a tag template (dockerd's loggerutils.ParseLogTag).
func (i *logTagInfo) render(tmpl string) (string, error) {
	t, err := templates.NewParse("log-tag", tmpl)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, i); err != nil {
		return "", err
	}
	return buf.String(), nil
}

func prefix12(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func newLogTagInfo(c *Container) *logTagInfo {
	i := &logTagInfo{
		Config:              c.logConfig().Config,
		ContainerID:         c.ID,
		ContainerName:       "/" + c.Name,
		ContainerEntrypoint: c.Path,
		ContainerArgs:       c.Args,
		ContainerImageID:    c.ImageID,
		ContainerCreated:    c.Created,
		LogPath:             c.logFilePath(),
		DaemonName:          "docker",
	}
	if c.Config != nil {
		i.ContainerImageName = c.Config.Image
		i.ContainerEnv = c.Config.Env
		i.ContainerLabels = c.Config.Labels
	}
	return i
}

// logAttrs are json-file's per-entry "attrs": the labels and environment
// variables the options name, and the tag (logger.Info.ExtraAttributes).
func (s *logSettings) logAttrs(info *logTagInfo) (map[string]string, error) {
	extra := map[string]string{}
	for _, l := range s.labels {
		if v, ok := info.ContainerLabels[l]; ok {
			extra[l] = v
		}
	}
	if s.labelsRegex != nil {
		for k, v := range info.ContainerLabels {
			if s.labelsRegex.MatchString(k) {
				extra[k] = v
			}
		}
	}
	env := map[string]string{}
	for _, e := range info.ContainerEnv {
		if k, v, ok := strings.Cut(e, "="); ok {
			env[k] = v
		}
	}
	for _, l := range s.env {
		if v, ok := env[l]; ok {
			extra[l] = v
		}
	}
	if s.envRegex != nil {
		for k, v := range env {
			if s.envRegex.MatchString(k) {
				extra[k] = v
			}
		}
	}
	if s.tag != "" {
		tag, err := info.render(s.tag)
		if err != nil {
			return nil, err
		}
		if tag != "" {
			extra["tag"] = tag
		}
	}
	if len(extra) == 0 {
		return nil, nil
	}
	return extra, nil
}
