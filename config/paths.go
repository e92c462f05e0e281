package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// CheckPaths checks that the files and folders the settings name can be
// used as poosmsd will use them, without creating or changing anything:
// the data folder and upload folder exist or can be created and are
// writable, the certificate and key load as a pair, and an SQLite file's
// folder exists. Each problem is an *Error naming the setting. Load does
// not call it (a configuration may be checked for another machine);
// poosmsd calls it before every command that touches the data.
func (c Config) CheckPaths() error {
	if c.needsDataDir() {
		if err := checkDir("--data-dir", c.DataDir); err != nil {
			return err
		}
	}
	if c.UploadDir != "" {
		if err := checkDir("--upload-dir", c.UploadDir); err != nil {
			return err
		}
	}
	if kind, path := c.Database(); kind == DBSQLite && c.DB != DBSQLite && path != ":memory:" {
		if err := checkSQLiteFile(c.DB, path); err != nil {
			return err
		}
	}
	if c.TLSCert != "" {
		return checkKeyPair(c.TLSCert, c.TLSKey)
	}
	return nil
}

// needsDataDir reports whether anything is kept in DataDir: the default
// SQLite file, the generated certificate, the generated TURN secret or
// the default upload folder.
func (c Config) needsDataDir() bool {
	return c.DB == DBSQLite || c.TLSCert == "" || (c.TURNSecret == "" && c.TURNAddr != "") || c.UploadDir == ""
}

// checkDir accepts a folder poosmsd can write to, or a path whose nearest
// existing parent is such a folder (poosmsd creates the rest).
func checkDir(setting, dir string) error {
	bad := func(why string) error {
		return &Error{Setting: setting, Value: dir, Want: "want a folder poosmsd can create or write to: " + why}
	}
	if dir == "" {
		return bad("it is empty")
	}
	p := filepath.Clean(dir)
	for {
		fi, err := os.Stat(p)
		switch {
		case err == nil && !fi.IsDir():
			return bad(p + " is a file, not a folder")
		case err == nil:
			if err := writable(p); err != nil {
				return bad(fmt.Sprintf("%s is not writable (%v)", p, errors.Unwrap(err)))
			}
			return nil
		case errors.Is(err, fs.ErrNotExist):
			parent := filepath.Dir(p)
			if parent == p {
				return bad(err.Error())
			}
			p = parent
		default:
			return bad(err.Error())
		}
	}
}

// checkSQLiteFile accepts an existing writable file, or a new file in an
// existing writable folder: SQLite creates the file but not its folder.
func checkSQLiteFile(value, path string) error {
	bad := func(why string) error {
		return &Error{Setting: "--db", Value: value, Want: "want sqlite:PATH with a file poosmsd can write, in a folder that exists: " + why}
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return bad(path + " is a folder")
	case err == nil:
		if err := writable(path); err != nil {
			return bad(fmt.Sprintf("%s is not writable (%v)", path, errors.Unwrap(err)))
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return bad(err.Error())
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return bad("the folder " + dir + " does not exist; create it first")
	}
	if err := writable(dir); err != nil {
		return bad(fmt.Sprintf("the folder %s is not writable (%v)", dir, errors.Unwrap(err)))
	}
	return nil
}

// checkKeyPair loads the certificate and key files as poosmsd will,
// naming the file at fault.
func checkKeyPair(certFile, keyFile string) error {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return &Error{Setting: "--tls-cert", Value: certFile, Want: "want a readable PEM certificate file: " + pathErr(err)}
	}
	if !strings.Contains(string(certPEM), "-----BEGIN CERTIFICATE-----") {
		return &Error{Setting: "--tls-cert", Value: certFile, Want: "want a PEM certificate file (-----BEGIN CERTIFICATE-----); this file holds none"}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return &Error{Setting: "--tls-key", Value: keyFile, Want: "want a readable PEM private key file: " + pathErr(err)}
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return &Error{Setting: "--tls-key", Value: keyFile,
			Want: "want the PEM private key of the certificate in --tls-cert: " + strings.TrimPrefix(err.Error(), "tls: ")}
	}
	return nil
}

// pathErr is err without the operation and path, which the message
// already shows.
func pathErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
