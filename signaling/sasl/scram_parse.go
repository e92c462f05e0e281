package sasl

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// clientFirst is a SCRAM client-first message parsed by RFC 5802 §7:
//
//	gs2-header        = gs2-cbind-flag "," [ authzid ] ","
//	client-first-bare = [ reserved-mext "," ] username "," nonce [ "," extensions ]
//
// The SCRAM library parses the message again on its own; poosms takes the
// identity from this strict parse only and checks that both agree.
type clientFirst struct {
	flag    string // "n", "y" or "p"
	cbType  string // with flag "p"
	authzid string // decoded; "" when absent
	user    string // decoded, not yet normalised
	nonce   string
}

// parseClientFirst refuses anything RFC 5802 does not allow in a
// client-first message: a missing or misplaced attribute, a repeated one,
// an m= mandatory extension, a badly escaped name, an empty nonce.
func parseClientFirst(msg string) (clientFirst, *Failure) {
	var cf clientFirst
	bad := func(text string) (clientFirst, *Failure) { return clientFirst{}, fail("malformed-request", text) }
	if !validSCRAMText(msg) {
		return bad("SCRAM message has control characters or is not UTF-8")
	}
	fields := strings.Split(msg, ",")
	if len(fields) < 4 {
		return bad("SCRAM client-first message needs a GS2 header, n= and r=")
	}
	switch f := fields[0]; {
	case f == "n" || f == "y":
		cf.flag = f
	case strings.HasPrefix(f, "p=") && len(f) > 2:
		cf.flag, cf.cbType = "p", f[2:]
		if !validCBName(cf.cbType) {
			return bad("SCRAM channel binding name malformed")
		}
	default:
		return bad("SCRAM GS2 flag must be n, y or p=TYPE")
	}
	if a := fields[1]; a != "" {
		raw, ok := strings.CutPrefix(a, "a=")
		if !ok {
			return bad("SCRAM GS2 authzid must be a=NAME")
		}
		if cf.authzid, ok = decodeSASLName(raw); !ok {
			return bad("SCRAM authzid is empty or badly escaped")
		}
	}
	if strings.HasPrefix(fields[2], "m=") {
		return bad("SCRAM mandatory extensions (m=) are not supported")
	}
	raw, ok := strings.CutPrefix(fields[2], "n=")
	if !ok {
		return bad("SCRAM client-first message must start with n=USER after the GS2 header")
	}
	if cf.user, ok = decodeSASLName(raw); !ok {
		return bad("SCRAM username is empty or badly escaped")
	}
	if cf.nonce, ok = strings.CutPrefix(fields[3], "r="); !ok || cf.nonce == "" {
		return bad("SCRAM client-first message must carry r=NONCE after n=")
	}
	if f := checkExtensions(fields[4:]); f != nil {
		return clientFirst{}, f
	}
	return cf, nil
}

// clientFinal is a SCRAM client-final message:
//
//	channel-binding "," nonce [ "," extensions ] "," proof
type clientFinal struct {
	cbind []byte
	nonce string
	proof []byte
}

func parseClientFinal(msg string) (clientFinal, *Failure) {
	var cf clientFinal
	bad := func(text string) (clientFinal, *Failure) { return clientFinal{}, fail("malformed-request", text) }
	if !validSCRAMText(msg) {
		return bad("SCRAM message has control characters or is not UTF-8")
	}
	fields := strings.Split(msg, ",")
	if len(fields) < 3 {
		return bad("SCRAM client-final message needs c=, r= and p=")
	}
	c, ok := strings.CutPrefix(fields[0], "c=")
	if !ok {
		return bad("SCRAM client-final message must start with c=")
	}
	var err error
	if cf.cbind, err = base64.StdEncoding.DecodeString(c); err != nil {
		return bad("SCRAM channel binding (c=) is not base64")
	}
	if cf.nonce, ok = strings.CutPrefix(fields[1], "r="); !ok || cf.nonce == "" {
		return bad("SCRAM client-final message must carry r= after c=")
	}
	last := len(fields) - 1
	p, ok := strings.CutPrefix(fields[last], "p=")
	if !ok {
		return bad("SCRAM client-final message must end with p=PROOF")
	}
	if cf.proof, err = base64.StdEncoding.DecodeString(p); err != nil || len(cf.proof) == 0 {
		return bad("SCRAM proof (p=) is not base64")
	}
	if f := checkExtensions(fields[2:last]); f != nil {
		return clientFinal{}, f
	}
	return cf, nil
}

// checkExtensions accepts optional extension attributes (RFC 5802 §5.1:
// a letter, "=", a value) but refuses any letter SCRAM itself defines, so
// no attribute can appear twice or out of its place.
func checkExtensions(fields []string) *Failure {
	for _, f := range fields {
		if len(f) < 2 || f[1] != '=' || !isAlpha(f[0]) {
			return fail("malformed-request", "SCRAM attribute malformed: "+truncate(f, 16))
		}
		if strings.IndexByte("amnrcspive", f[0]) >= 0 {
			return fail("malformed-request", "SCRAM attribute "+f[:1]+"= is repeated or out of place")
		}
	}
	return nil
}

// decodeSASLName undoes RFC 5802's saslname escaping: "=2C" is ",", "=3D"
// is "=", and any other "=" is an error.
func decodeSASLName(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	if !strings.Contains(s, "=") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), true
}

// validSCRAMText: SCRAM messages are UTF-8 without NUL or other control
// characters.
func validSCRAMText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

func validCBName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
