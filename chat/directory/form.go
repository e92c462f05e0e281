package directory

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/language"
	"golang.org/x/text/unicode/norm"

	"poosms.org/poosms/stanza"
)

// field builds a data form (XEP-0004) field with its values.
func field(typ, name, label string, values ...string) *stanza.Element {
	f := stanza.New(NSData, "field").SetAttr("var", name).SetAttr("type", typ).SetAttr("label", label)
	for _, v := range values {
		f.Append(stanza.New(NSData, "value").SetText(v))
	}
	return f
}

// formType is the hidden FORM_TYPE field of a form in namespace ns.
func formType(ns string) *stanza.Element {
	return field("hidden", "FORM_TYPE", "", ns)
}

// dataForm returns the jabber:x:data form inside q, or nil.
func dataForm(q *stanza.Element) *stanza.Element { return q.Child(NSData, "x") }

// formValues returns the values of a submitted form's fields by name.
func formValues(x *stanza.Element) map[string][]string {
	out := make(map[string][]string)
	for _, f := range x.Elements() {
		if f.Space != NSData || f.Local != "field" || f.Attr("var") == "" {
			continue
		}
		var vals []string
		for _, v := range f.Elements() {
			if v.Space == NSData && v.Local == "value" {
				vals = append(vals, v.Text())
			}
		}
		out[f.Attr("var")] = vals
	}
	return out
}

// first returns the first value, trimmed, or "".
func first(vals []string) string {
	if len(vals) == 0 {
		return ""
	}
	return strings.TrimSpace(vals[0])
}

// invalidError is a value a user entered that the directory cannot take;
// its text is shown to the user.
type invalidError struct{ text string }

func (e *invalidError) Error() string { return e.text }

// cleanText normalises free text (NFC, spaces trimmed and collapsed) and
// checks its length and that it holds no control characters.
func cleanText(what, s string, maxRunes int) (string, error) {
	s = strings.Join(strings.Fields(norm.NFC.String(s)), " ")
	if utf8.RuneCountInString(s) > maxRunes {
		return "", &invalidError{what + " is longer than " + strconv.Itoa(maxRunes) + " characters"}
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return "", &invalidError{what + " holds a control character"}
		}
	}
	return s, nil
}

// parseCountry returns the ISO 3166-1 alpha-2 code for a two- or
// three-letter or numeric country code, or "" for "".
func parseCountry(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	r, err := language.ParseRegion(s)
	if err == nil {
		r = r.Canonicalize()
	}
	if err != nil || !r.IsCountry() {
		return "", &invalidError{"unknown country code " + quote(s) + " (use a two-letter code such as DE or BR)"}
	}
	return r.String(), nil
}

// parseLanguage returns the canonical BCP 47 form of a language tag.
func parseLanguage(s string) (string, error) {
	t, err := language.Parse(s)
	if err != nil || t == language.Und {
		return "", &invalidError{"unknown language " + quote(s) + " (use a code such as en, pt-BR or de)"}
	}
	return t.String(), nil
}

// splitList splits values on commas and line breaks (and, for languages,
// spaces), dropping empty items.
func splitList(vals []string, spaces bool) []string {
	var out []string
	for _, v := range vals {
		for _, item := range strings.FieldsFunc(v, func(r rune) bool {
			return r == ',' || r == '\n' || r == '\r' || r == ';' || (spaces && unicode.IsSpace(r))
		}) {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
	}
	return out
}

func quote(s string) string {
	if utf8.RuneCountInString(s) > 40 {
		s = string([]rune(s)[:40]) + "…"
	}
	return "“" + s + "”"
}
