package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"poosms.org/poosms/config"
	"poosms.org/poosms/internal/testenv"
)

// The deployment files are checked here, where no container engine or
// systemd runs: against the server's own defaults, and with the linters
// this machine has (docker-compose's validator, dockerfile-utils,
// systemd-analyze), which CI must have.

// repoFile reads a file at the top of the repository.
func repoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// listenPorts are the ports the server listens on for cfg, as "N/proto".
func listenPorts(t *testing.T, cfg config.Config) []string {
	t.Helper()
	var ports []string
	add := func(addr string, protos ...string) {
		if addr == "" {
			return
		}
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("%q: %v", addr, err)
		}
		for _, proto := range protos {
			ports = append(ports, p+"/"+proto)
		}
	}
	add(cfg.C2SAddr, "tcp")
	add(cfg.C2STLSAddr, "tcp")
	add(cfg.HTTPAddr, "tcp")
	add(cfg.TURNAddr, "udp", "tcp")
	add(cfg.TURNTLSAddr, "tcp")
	add(cfg.MediaUDPAddr, "udp")
	add(cfg.MediaTCPAddr, "tcp")
	if cfg.S2SAddr != "" {
		add(cfg.S2SAddr, "tcp")
		add(cfg.S2STLSAddr, "tcp")
	}
	slices.Sort(ports)
	return ports
}

// withProto adds /tcp to a port written without its protocol.
func withProto(p string) string {
	if !strings.Contains(p, "/") {
		return p + "/tcp"
	}
	return p
}

// dockerfile returns the ports the image exposes and the volume it declares.
func dockerfile(t *testing.T) (expose []string, volume string) {
	t.Helper()
	for _, line := range strings.Split(repoFile(t, "Dockerfile"), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 1 && f[0] == "EXPOSE":
			for _, p := range f[1:] {
				expose = append(expose, withProto(p))
			}
		case len(f) > 1 && f[0] == "VOLUME":
			volume = strings.Trim(strings.Join(f[1:], ""), `[]"`)
		}
	}
	slices.Sort(expose)
	return expose, volume
}

// The image exposes every port the server listens on by default and
// declares the data folder as its volume; the README's docker run line
// publishes all of them and mounts that volume.
func TestContainerPortsAndVolume(t *testing.T) {
	want := listenPorts(t, config.Default())
	expose, volume := dockerfile(t)
	if !slices.Equal(expose, want) {
		t.Errorf("Dockerfile EXPOSE %v, want the listeners %v", expose, want)
	}
	if !strings.Contains(repoFile(t, "Dockerfile"), "POOSMS_DATA_DIR="+volume) {
		t.Errorf("the volume %s is not the data folder POOSMS_DATA_DIR", volume)
	}
	readme := repoFile(t, "README.md")
	i := strings.Index(readme, "docker run ")
	if i < 0 {
		t.Fatal("README.md has no docker run line")
	}
	run := readme[i:]
	run = strings.ReplaceAll(run[:strings.Index(run, "poosms\n")+len("poosms")], "\\\n", " ")
	var published, mounts []string
	f := strings.Fields(run)
	for k := 0; k+1 < len(f); k++ {
		switch f[k] {
		case "-p":
			parts := strings.Split(f[k+1], ":")
			if host, inside := parts[0], parts[len(parts)-1]; strings.Split(host, "/")[0] != strings.Split(inside, "/")[0] {
				t.Errorf("README publishes %s: the port must be the same outside (it is announced to clients)", f[k+1])
			}
			published = append(published, withProto(parts[len(parts)-1]))
		case "-v":
			mounts = append(mounts, f[k+1][strings.LastIndex(f[k+1], ":")+1:])
		}
	}
	slices.Sort(published)
	if !slices.Equal(published, want) {
		t.Errorf("README's docker run publishes %v, want %v", published, want)
	}
	if !slices.Contains(mounts, volume) {
		t.Errorf("README's docker run mounts %v, want the image's volume %s", mounts, volume)
	}

	if testenv.CI() || haveCommand("dockerfile-utils") {
		lint := testenv.Command(t, "dockerfile-utils", "npm install -g dockerfile-utils")
		if out, err := exec.Command(lint, "lint", filepath.Join("..", "..", "Dockerfile")).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("dockerfile-utils lint Dockerfile: %v\n%s", err, out)
		}
	}
}

func haveCommand(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// compose.yaml runs two poosmsd nodes as one cluster with MariaDB and
// Redis: each node's settings load, every port it listens on is published
// as itself, each keeps its data folder in a volume, and the file passes
// docker-compose's own validation.
func TestComposeCluster(t *testing.T) {
	var doc struct {
		Services map[string]struct {
			Build       any               `yaml:"build"`
			Image       string            `yaml:"image"`
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
			Volumes     []string          `yaml:"volumes"`
			DependsOn   map[string]any    `yaml:"depends_on"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(repoFile(t, "compose.yaml")), &doc); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	_, volume := dockerfile(t)
	// What an operator's .env holds, as compose.yaml's header says.
	dotEnv := map[string]string{"POOSMS_DOMAIN": "chat.example.org", "POOSMS_PUBLIC_IP": "203.0.113.7",
		"DB_PASSWORD": "db-password", "REDIS_PASSWORD": "redis-password", "CLUSTER_SECRET": strings.Repeat("c", 64), "TURN_SECRET": strings.Repeat("t", 64),
		"DIALBACK_SECRET": "a dialback secret of 32 characters"}
	interpolation := regexp.MustCompile(`\$\{([A-Z_]+):\?[^}]*\}`)
	expand := func(v string) string {
		return interpolation.ReplaceAllStringFunc(v, func(m string) string {
			return dotEnv[interpolation.FindStringSubmatch(m)[1]]
		})
	}
	known := config.Usage()
	var nodes, nodeIDs []string
	for name, svc := range doc.Services {
		if svc.Build == nil {
			continue
		}
		nodes = append(nodes, name)
		var env []string
		for k, v := range svc.Environment {
			if !strings.Contains(known, "[env "+k+"]") {
				t.Errorf("%s: %s is not a poosmsd setting", name, k)
			}
			env = append(env, k+"="+expand(v))
		}
		cfg, _, err := config.Load(nil, env)
		if err != nil {
			t.Errorf("%s: its settings do not load: %v", name, err)
			continue
		}
		if kind, _ := cfg.Database(); kind != config.DBMySQL || cfg.Redis == "" || svc.Environment["POOSMS_CLUSTER_SECRET"] == "" {
			t.Errorf("%s: want the MySQL store, Redis and a cluster secret", name)
		}
		nodeIDs = append(nodeIDs, cfg.NodeID)
		var published []string
		for _, p := range svc.Ports {
			parts := strings.Split(p, ":")
			if strings.Split(parts[0], "/")[0] != strings.Split(parts[len(parts)-1], "/")[0] {
				t.Errorf("%s publishes %s: the port must be the same outside", name, p)
			}
			published = append(published, withProto(parts[len(parts)-1]))
		}
		slices.Sort(published)
		if want := listenPorts(t, cfg); !slices.Equal(published, want) {
			t.Errorf("%s publishes %v, want its listeners %v", name, published, want)
		}
		if !slices.ContainsFunc(svc.Volumes, func(v string) bool { return strings.HasSuffix(v, ":"+volume) }) {
			t.Errorf("%s mounts %v, want a volume at %s", name, svc.Volumes, volume)
		}
		for _, dep := range []string{"mariadb", "redis"} {
			if _, ok := svc.DependsOn[dep]; !ok || doc.Services[dep].Image == "" {
				t.Errorf("%s does not depend on a %s service", name, dep)
			}
		}
	}
	slices.Sort(nodeIDs)
	if len(nodes) != 2 || len(slices.Compact(nodeIDs)) != 2 {
		t.Errorf("want two poosmsd nodes with their own node IDs, got %v %v", nodes, nodeIDs)
	}

	if testenv.CI() || haveCommand("docker-compose") {
		compose := testenv.Command(t, "docker-compose", "apt-get install docker-compose")
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(repoFile(t, "compose.yaml")), 0o644); err != nil {
			t.Fatal(err)
		}
		var env strings.Builder
		for k, v := range dotEnv {
			env.WriteString(k + "=" + v + "\n")
		}
		if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(env.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(compose, "-f", "compose.yaml", "config", "-q")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("docker-compose config: %v\n%s", err, out)
		}
	}
}

// The systemd unit runs poosmsd as its own user with the sandboxing a
// network daemon should have, and passes systemd-analyze verify.
func TestSystemdUnit(t *testing.T) {
	unit := repoFile(t, "contrib/poosmsd.service")
	for _, want := range []string{
		"User=poosms", "ExecStart=/usr/local/bin/poosmsd serve ", "StateDirectory=poosms", "LimitNOFILE=",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
		"ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectControlGroups=yes",
		"RestrictAddressFamilies=", "RestrictNamespaces=yes", "LockPersonality=yes", "MemoryDenyWriteExecute=yes",
		"SystemCallFilter=@system-service", "CapabilityBoundingSet=\n", "RestartPreventExitStatus=2",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("contrib/poosmsd.service lacks %q", want)
		}
	}
	analyze := testenv.Command(t, "systemd-analyze", "apt-get install systemd")
	// verify wants the executable to exist: point it at this test binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "poosmsd.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/poosmsd", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, analyze, "verify", path).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
