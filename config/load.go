package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// ErrHelp is returned by Load when the command line asks for --help (or
// -h). The caller prints Usage and exits successfully.
var ErrHelp = errors.New("config: help requested")

// Error is a configuration mistake a person must fix: a bad value, an
// unknown YAML key, an unreadable file or an unknown flag. poosmsd exits
// with status 2 on it.
type Error struct {
	// Setting is the flag form of the setting at fault, e.g.
	// "--max-stanza-bytes"; empty when the problem is not one setting's
	// value (see Problem).
	Setting string
	// Value is the rejected value (passwords in a db URL are hidden).
	Value string
	// Want says, in words, what the setting accepts.
	Want string
	// Source says where the value came from: "the command line",
	// "the environment" or "FILE line N".
	Source string
	// Problem describes a mistake that is not a setting's value, such as
	// an unknown YAML key or an unknown flag.
	Problem string
	// Err is the underlying error, if any.
	Err error
}

func (e *Error) Error() string {
	if e.Setting == "" {
		if e.Source != "" {
			return e.Source + ": " + e.Problem
		}
		return e.Problem
	}
	var b strings.Builder
	s := lookup(strings.TrimPrefix(e.Setting, "--"))
	if s != nil {
		fmt.Fprintf(&b, "invalid %s (%s, %s) %q", e.Setting, s.envName(), s.yamlKey(), e.Value)
	} else {
		fmt.Fprintf(&b, "invalid %s %q", e.Setting, e.Value)
	}
	if e.Source != "" {
		b.WriteString(" from " + e.Source)
	}
	b.WriteString(": " + e.Want)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// flagValue records a flag's raw text; it is applied after the YAML file
// and the environment so that flags win.
type flagValue struct {
	s   *setting
	def string
	raw string
}

func (f *flagValue) String() string { return f.def }
func (f *flagValue) Set(v string) error {
	if f.s.isList && f.raw != "" && v != "" {
		// A list flag given again adds to it.
		v = f.raw + "," + v
	}
	f.raw = v
	return nil
}
func (f *flagValue) Type() string {
	switch {
	case f.s.isBool:
		return "bool"
	case f.s.typ != "":
		return f.s.typ
	}
	return "string"
}

func newFlagSet() (*pflag.FlagSet, map[string]*flagValue) {
	fs := pflag.NewFlagSet("poosmsd", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SortFlags = false
	def := Default()
	vals := make(map[string]*flagValue, len(settings))
	for _, s := range settings {
		d := s.get(&def)
		v := &flagValue{s: s, def: d}
		vals[s.name] = v
		fl := fs.VarPF(v, s.name, "", s.usage+" [env "+s.envName()+"]")
		if s.isBool {
			fl.NoOptDefVal = "true"
		}
	}
	return fs, vals
}

// Usage is the flag help text, one line per setting with its default and
// its environment variable.
func Usage() string {
	fs, _ := newFlagSet()
	return fs.FlagUsages()
}

// Positional returns the arguments of args that are not flags or flag
// values (the subcommand and its operands), wherever they stand among
// the flags, without applying or checking any setting. Unknown flags are
// an *Error; --help gives ErrHelp.
func Positional(args []string) ([]string, error) {
	fs, _ := newFlagSet()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, ErrHelp
		}
		return nil, &Error{Source: "the command line", Problem: err.Error(), Err: err}
	}
	return fs.Args(), nil
}

// Load builds the effective configuration from defaults, the YAML file
// named by --config or POOSMS_CONFIG, the POOSMS_* variables in environ
// (os.Environ form) and the flags in args, then validates it. It returns
// the positional arguments left after the flags. Mistakes are *Error;
// --help gives ErrHelp.
func Load(args, environ []string) (Config, []string, error) {
	fs, vals := newFlagSet()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return Config{}, nil, ErrHelp
		}
		return Config{}, nil, &Error{Source: "the command line", Problem: err.Error(), Err: err}
	}
	env := make(map[string]string)
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "POOSMS_") {
			env[k] = v
		}
	}

	c := Default()
	file, fromFlag := vals["config"].raw, fs.Changed("config")
	if !fromFlag {
		file = env[lookup("config").envName()]
	}
	if file != "" {
		c.Config = file
		if err := c.loadFile(file); err != nil {
			return Config{}, nil, err
		}
	}
	for _, s := range settings {
		if s.name == "config" {
			continue
		}
		if v, ok := env[s.envName()]; ok {
			if err := apply(&c, s, v, "the environment ("+s.envName()+")"); err != nil {
				return Config{}, nil, err
			}
		}
	}
	for _, s := range settings {
		if s.name == "config" || !fs.Changed(s.name) {
			continue
		}
		if err := apply(&c, s, vals[s.name].raw, "the command line"); err != nil {
			return Config{}, nil, err
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, nil, err
	}
	return c, fs.Args(), nil
}

func apply(c *Config, s *setting, v, source string) error {
	want, ok := s.set(c, v)
	if ok {
		return nil
	}
	shown := v
	switch s.name {
	case "db":
		shown = redactDB(v)
	case "redis":
		shown = redactURL(v)
	}
	return &Error{Setting: s.flagName(), Value: shown, Want: want, Source: source}
}

// Validate checks rules that involve more than one setting, and that
// each setting holds an acceptable value (for a Config built in code).
func (c Config) Validate() error {
	for _, s := range settings {
		if s.name == "config" || s.secret {
			continue
		}
		probe := c
		if err := apply(&probe, s, s.get(&c), ""); err != nil {
			return err
		}
	}
	if c.Redis != "" {
		if kind, _ := c.Database(); kind != DBMySQL {
			return &Error{Setting: "--redis", Value: redactURL(c.Redis),
				Want: "a cluster needs the MySQL store that all its nodes share: set --db mysql://user:password@tcp(host:port)/dbname " +
					"(SQLite is one node's own file), or leave --redis empty to run a single node"}
		}
		if c.ClusterNodeTTL <= c.ClusterHeartbeat {
			return &Error{Setting: "--cluster-node-ttl", Value: shortDur(c.ClusterNodeTTL),
				Want: fmt.Sprintf("want a duration longer than --cluster-heartbeat (%s), such as three heartbeats", shortDur(c.ClusterHeartbeat))}
		}
		if c.ClusterLeaseTTL <= c.ClusterHeartbeat {
			return &Error{Setting: "--cluster-lease-ttl", Value: shortDur(c.ClusterLeaseTTL),
				Want: fmt.Sprintf("want a duration longer than --cluster-heartbeat (%s), such as five heartbeats", shortDur(c.ClusterHeartbeat))}
		}
		if _, err := c.ClusterKey(); err != nil {
			return err
		}
		if c.RedisCAFile != "" {
			if !strings.HasPrefix(c.Redis, "rediss://") {
				return &Error{Setting: "--redis-ca-file", Value: c.RedisCAFile,
					Want: "the CA is only used over TLS: give --redis as rediss://…, or leave --redis-ca-file empty"}
			}
			if _, err := c.RedisRootCAs(); err != nil {
				return err
			}
		}
	}
	if c.S2SCAFile != "" {
		if err := checkCAFile(c.S2SCAFile); err != nil {
			return &Error{Setting: "--s2s-ca-file", Value: c.S2SCAFile,
				Want: "want a readable PEM file of CA certificates (" + err.Error() + ")", Err: err}
		}
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		set, unset, v := "--tls-cert", "--tls-key", c.TLSCert
		if c.TLSCert == "" {
			set, unset, v = "--tls-key", "--tls-cert", c.TLSKey
		}
		return &Error{Setting: set, Value: v,
			Want: fmt.Sprintf("want both --tls-cert and --tls-key, or neither (%s is empty)", unset)}
	}
	return nil
}

func (c *Config) loadFile(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return &Error{Source: file, Problem: "cannot read the config file: " + err.Error(), Err: err}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return &Error{Source: file, Problem: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: "), Err: err}
	}
	if len(doc.Content) == 0 {
		return nil // an empty file sets nothing
	}
	top := doc.Content[0]
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return nil
	}
	if top.Kind != yaml.MappingNode {
		return &Error{Source: fmt.Sprintf("%s line %d", file, top.Line),
			Problem: "want settings as key: value lines at the top level"}
	}
	seen := make(map[string]int)
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		where := fmt.Sprintf("%s line %d", file, k.Line)
		s := lookup(strings.ReplaceAll(k.Value, "_", "-"))
		if s == nil || s.yamlKey() != k.Value || s.name == "config" {
			return &Error{Source: where, Problem: fmt.Sprintf("unknown setting %q (see poosmsd --help for the list)", k.Value)}
		}
		if prev, ok := seen[k.Value]; ok {
			return &Error{Source: where, Problem: fmt.Sprintf("%q is set twice (also on line %d)", k.Value, prev)}
		}
		seen[k.Value] = k.Line
		var text string
		switch {
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
			text = ""
		case v.Kind == yaml.ScalarNode:
			text = v.Value
		case v.Kind == yaml.SequenceNode && s.isList:
			parts := make([]string, 0, len(v.Content))
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return &Error{Source: fmt.Sprintf("%s line %d", file, item.Line),
						Problem: fmt.Sprintf("%q: want a list of single values", k.Value)}
				}
				parts = append(parts, item.Value)
			}
			text = strings.Join(parts, ",")
		default:
			return &Error{Source: fmt.Sprintf("%s line %d", file, v.Line),
				Problem: fmt.Sprintf("%q: want a single value, not a list or mapping", k.Value)}
		}
		if err := apply(c, s, text, where); err != nil {
			return err
		}
	}
	return nil
}

// Dump renders the effective configuration as YAML that Load accepts
// back, each key preceded by its meaning. Secrets show as "(set)" and a
// MySQL password as "xxxxx".
func (c Config) Dump() string {
	m := &yaml.Node{Kind: yaml.MappingNode}
	if c.Config != "" {
		m.HeadComment = "settings read from " + c.Config
	}
	def := Default()
	for _, s := range settings {
		if s.name == "config" {
			continue
		}
		v := s.get(&c)
		if s.secret && v != "" {
			v = "(set)"
		}
		tag := "!!str"
		switch {
		case s.isBool:
			tag = "!!bool"
		case s.isInt:
			tag = "!!int"
		}
		comment := s.usage
		if d := s.get(&def); d != "" {
			comment += " (default " + d + ")"
		}
		m.Content = append(m.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s.yamlKey(), HeadComment: comment},
			&yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v})
	}
	out, err := yaml.Marshal(m)
	if err != nil {
		// Only scalar strings go in; marshalling cannot fail.
		panic(fmt.Sprintf("config: dump: %v", err))
	}
	return string(out)
}

// checkCAFile checks that file holds at least one PEM certificate.
func checkCAFile(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return errors.New("no PEM certificate in it")
	}
	return nil
}
