package store

import (
	"strings"
	"testing"
)

func TestMySQLConfigForms(t *testing.T) {
	for _, tc := range []struct{ in, user, pass, addr, db string }{
		{"root@tcp(127.0.0.1:3306)/poosms", "root", "", "127.0.0.1:3306", "poosms"},
		{"u:p@unix(/run/mysqld.sock)/db", "u", "p", "/run/mysqld.sock", "db"},
		{"u:p@db.example:3306/poosms?timeout=2s", "u", "p", "db.example:3306", "poosms"},
		// The driver form takes the password as written, whatever it holds.
		{"u:p@s/w:rd@tcp(127.0.0.1:3306)/x", "u", "p@s/w:rd", "127.0.0.1:3306", "x"},
		// The URL form is percent-decoded.
		{"u:p%40s%2Fw%3Ard%25@127.0.0.1:3306/x", "u", "p@s/w:rd%", "127.0.0.1:3306", "x"},
		{"u%3Ax:pw@[::1]:3307/my%2Ddb", "u:x", "pw", "[::1]:3307", "my-db"},
		{"127.0.0.1/x", "", "", "127.0.0.1:3306", "x"},
	} {
		cfg, err := mysqlConfig(tc.in)
		if err != nil {
			t.Errorf("mysqlConfig(%q): %v", tc.in, err)
			continue
		}
		if cfg.User != tc.user || cfg.Passwd != tc.pass || cfg.Addr != tc.addr || cfg.DBName != tc.db {
			t.Errorf("mysqlConfig(%q) = user %q pass %q addr %q db %q; want %q %q %q %q",
				tc.in, cfg.User, cfg.Passwd, cfg.Addr, cfg.DBName, tc.user, tc.pass, tc.addr, tc.db)
		}
	}
	if cfg, err := mysqlConfig("u:pw@db:3306/x?timeout=2s"); err != nil || cfg.Timeout.String() != "2s" {
		t.Errorf("URL parameters are lost: %+v %v", cfg, err)
	}
	if _, err := mysqlConfig("u:p%zz@db:3306/x"); err == nil {
		t.Error("a bad percent-escape was accepted")
	} else if strings.Contains(err.Error(), "p%zz") {
		t.Errorf("the error shows the password: %v", err)
	}
}
