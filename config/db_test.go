package config

import (
	"strings"
	"testing"
)

func TestMySQLDriverForm(t *testing.T) {
	dsn := "mysql://poosms:hunter2@tcp(127.0.0.1:3306)/poosms?timeout=5s"
	c, _, err := Load([]string{"--db", dsn}, nil)
	if err != nil {
		t.Fatalf("the driver form from the issue was refused: %v", err)
	}
	if kind, target := c.Database(); kind != DBMySQL || target != dsn {
		t.Fatalf("Database() = %s %s", kind, target)
	}
	if d := c.Dump(); strings.Contains(d, "hunter2") || !strings.Contains(d, "poosms:xxxxx@tcp(127.0.0.1:3306)/poosms") {
		t.Fatalf("dump shows or mangles the password:\n%s", d)
	}
	for _, bad := range []string{"mysql://root@tcp(127.0.0.1:3306)/", "mysql://root@tcp(127.0.0.1:3306", "mysql://u:p@db:3306/"} {
		if _, _, err := Load([]string{"--db", bad}, nil); err == nil {
			t.Errorf("%q was accepted", bad)
		} else if strings.Contains(err.Error(), ":p@") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

// A password holding @, / or : is accepted in both forms and never shown.
func TestMySQLPasswordCharacters(t *testing.T) {
	for _, dsn := range []string{
		"mysql://poosms:p@ss/w:rd@tcp(127.0.0.1:3306)/poosms",
		"mysql://poosms:p%40ss%2Fw%3Ard@127.0.0.1:3306/poosms",
	} {
		c, _, err := Load([]string{"--db", dsn}, nil)
		if err != nil {
			t.Errorf("%s was refused: %v", dsn, err)
			continue
		}
		for _, shown := range []string{c.Dump(), c.RedactedDB()} {
			if strings.Contains(shown, "w:rd") || strings.Contains(shown, "3Ard") || !strings.Contains(shown, "poosms:xxxxx@") {
				t.Errorf("%s shown as %q", dsn, c.RedactedDB())
			}
		}
	}
}
