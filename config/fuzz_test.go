package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfigFile loads any YAML as the config file. A file that loads
// gives a configuration that passes Validate; one that does not gives an
// *Error that names the setting or says what is wrong where.
func FuzzConfigFile(f *testing.F) {
	for _, s := range []string{
		"domain: example.org\nc2s_addr: ':5222'\n",
		"domain: example.org\nwebsocket_origins: [a.example, '*.b.example']\n",
		"domain: example.org\nmax_stanza_bytes: 1k\n",
		"domain: example.org\ndomain: other.org\n",
		"nope: 1\n",
		"- a\n- b\n",
		"domain: [a, b]\n",
		"domain: {a: b}\n",
		"redis: redis://127.0.0.1:6379\n",
		"tls_cert: /x\n",
		"a: &a [*a]\n",
		"x: &x [1,2,3]\ny: &y [*x,*x,*x,*x]\nz: [*y,*y,*y,*y]\n",
		"~\n",
		"",
		"\t",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(t.TempDir(), "poosms.yaml")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, _, err := Load([]string{"--config", file}, nil)
		if err == nil {
			if err := c.Validate(); err != nil {
				t.Fatalf("%q loaded, but does not validate: %v", data, err)
			}
			return
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("%q: error %v is not a config.Error", data, err)
		}
		if ce.Setting == "" && ce.Problem == "" {
			t.Fatalf("%q: error %v names neither a setting nor a problem", data, err)
		}
		if ce.Setting == "" && !strings.HasPrefix(ce.Source, file) {
			t.Fatalf("%q: error %v does not say where", data, err)
		}
	})
}
