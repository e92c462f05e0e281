package store

import "testing"

func TestDriverDSN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"root@tcp(127.0.0.1:3306)/poosms", "root@tcp(127.0.0.1:3306)/poosms"},
		{"u:p@unix(/run/mysqld.sock)/db", "u:p@unix(/run/mysqld.sock)/db"},
		{"u:p@db.example:3306/poosms?timeout=2s", "u:p@tcp(db.example:3306)/poosms?timeout=2s"},
		{"u:p@w@127.0.0.1:3306/x", "u:p@w@tcp(127.0.0.1:3306)/x"},
		{"127.0.0.1:3306/x", "tcp(127.0.0.1:3306)/x"},
	} {
		if got := driverDSN(tc.in); got != tc.want {
			t.Errorf("driverDSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
