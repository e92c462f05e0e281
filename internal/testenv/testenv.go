// Package testenv gives poosms's tests the outside services they need:
// a fresh MySQL database, and the rule that under CI=true a missing service
// is a failure, never a skip.
package testenv

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"os/exec"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// CI reports whether the tests run under CI (CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// Require skips the test with why, or fails it under CI.
func Require(t testing.TB, why string) {
	t.Helper()
	if CI() {
		t.Fatalf("required under CI=true: %s", why)
	}
	t.Skip(why)
}

// Command returns the path of an executable, skipping (or failing under
// CI) when it is missing; hint says how to install it.
func Command(t testing.TB, path, hint string) string {
	t.Helper()
	p, err := exec.LookPath(path)
	if err != nil {
		Require(t, path+" is not installed ("+hint+")")
	}
	return p
}

// RedisAddr returns the test Redis's address, POOSMS_TEST_REDIS_ADDR,
// skipping (failing under CI) when it is not set.
func RedisAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("POOSMS_TEST_REDIS_ADDR")
	if addr == "" {
		Require(t, "POOSMS_TEST_REDIS_ADDR is not set")
	}
	return addr
}

// MySQLDSN creates a database of its own on the server named by
// POOSMS_TEST_MYSQL_DSN (e.g. "root@tcp(127.0.0.1:3306)/"), drops it when
// the test ends, and returns the store DSN for it ("mysql://…/t_xxxx").
func MySQLDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("POOSMS_TEST_MYSQL_DSN")
	if base == "" {
		Require(t, "POOSMS_TEST_MYSQL_DSN is not set")
	}
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatalf("POOSMS_TEST_MYSQL_DSN: %v", err)
	}
	cfg.DBName = ""
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "t_" + hex.EncodeToString(b)
	if _, err := admin.Exec("CREATE DATABASE " + name + " CHARACTER SET utf8mb4"); err != nil {
		admin.Close()
		Require(t, "MySQL at POOSMS_TEST_MYSQL_DSN is unreachable: "+err.Error())
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
		admin.Close()
	})
	cfg.DBName = name
	return "mysql://" + cfg.FormatDSN()
}
