package directory

import (
	"context"
	"errors"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// Search form fields (jabber:iq:search data form).
const (
	fieldNick     = "nick"
	fieldCountry  = "country"
	fieldLanguage = "language"
	fieldInterest = "interest"
	// Listing form and search result fields.
	fieldJID       = "jid"
	fieldLanguages = "languages"
	fieldInterests = "interests"
)

const searchInstructions = "Find people who listed themselves in this server's directory. " +
	"Fill in any of the fields; every one filled in must match. Leave all empty to see everyone listed."

// searchForm is the answer to a search get (XEP-0055 §2.1 with the data
// form of §3): the legacy <nick/> field for old clients, and the form.
func searchForm() *stanza.Element {
	x := stanza.New(NSData, "x").SetAttr("type", "form").Append(
		stanza.New(NSData, "title").SetText("Find people"),
		stanza.New(NSData, "instructions").SetText(searchInstructions),
		formType(NSSearch),
		field("text-single", fieldNick, "Nickname contains"),
		field("text-single", fieldCountry, "Country (two-letter code, e.g. DE)"),
		field("text-single", fieldLanguage, "Speaks (language code, e.g. en)"),
		field("text-single", fieldInterest, "Interest contains"),
	)
	return stanza.New(NSSearch, "query").Append(
		stanza.New(NSSearch, "instructions").SetText(searchInstructions),
		stanza.New(NSSearch, "nick"),
		x,
	)
}

// search answers a search set: with a data form, a data form of results;
// with legacy fields, legacy <item/>s.
func (s *Service) search(ctx context.Context, iq, q *stanza.Element) *stanza.Element {
	var (
		query store.DirectoryQuery
		err   error
	)
	x := dataForm(q)
	if x != nil {
		if x.Attr("type") != "submit" {
			return stanza.ErrorReply(iq, stanza.BadRequest, "the search form is submitted with type='submit'")
		}
		v := formValues(x)
		if ft := first(v["FORM_TYPE"]); ft != "" && ft != NSSearch {
			return stanza.ErrorReply(iq, stanza.BadRequest, "not a search form")
		}
		query.Nick = first(v[fieldNick])
		query.Interest = first(v[fieldInterest])
		if query.Country, err = parseCountry(first(v[fieldCountry])); err != nil {
			return invalid(iq, err)
		}
		if lang := first(v[fieldLanguage]); lang != "" {
			if query.Language, err = parseLanguage(lang); err != nil {
				return invalid(iq, err)
			}
		}
	} else {
		// Only the nickname is kept; asking by name or address finds nobody
		// rather than everybody.
		for _, f := range []string{"first", "last", "email"} {
			if q.ChildText(NSSearch, f) != "" {
				return stanza.Result(iq, stanza.New(NSSearch, "query"))
			}
		}
		query.Nick = q.ChildText(NSSearch, "nick")
	}
	if query.Nick, err = cleanText("the nickname", query.Nick, MaxNickRunes); err != nil {
		return invalid(iq, err)
	}
	if query.Interest, err = cleanText("the interest", query.Interest, MaxInterestRunes); err != nil {
		return invalid(iq, err)
	}
	query.Max = s.max
	found, err := s.st.SearchDirectory(ctx, query)
	if err != nil {
		s.log.Error("directory: search", "jid", iq.From(), "err", err)
		return stanza.ErrorReply(iq, stanza.InternalServerError, "")
	}
	if x != nil {
		return stanza.Result(iq, stanza.New(NSSearch, "query").Append(s.resultForm(found)))
	}
	out := stanza.New(NSSearch, "query")
	for _, e := range found {
		out.Append(stanza.New(NSSearch, "item").SetAttr("jid", s.address(e.Username)).Append(
			stanza.New(NSSearch, "nick").SetText(e.Nick)))
	}
	return stanza.Result(iq, out)
}

// resultForm lists found entries as a data form of type result.
func (s *Service) resultForm(found []store.DirectoryEntry) *stanza.Element {
	x := stanza.New(NSData, "x").SetAttr("type", "result").Append(
		formType(NSSearch),
		stanza.New(NSData, "reported").Append(
			field("jid-single", fieldJID, "Address"),
			field("text-single", fieldNick, "Nickname"),
			field("text-single", fieldCountry, "Country"),
			field("text-multi", fieldLanguages, "Languages"),
			field("text-multi", fieldInterests, "Interests"),
		),
	)
	for _, e := range found {
		item := stanza.New(NSData, "item").Append(
			itemField(fieldJID, s.address(e.Username)),
			itemField(fieldNick, e.Nick),
			itemField(fieldCountry, e.Country),
			itemField(fieldLanguages, e.Languages...),
			itemField(fieldInterests, e.Interests...),
		)
		x.Append(item)
	}
	return x
}

// itemField is a field of a result item: only var and values.
func itemField(name string, values ...string) *stanza.Element {
	f := stanza.New(NSData, "field").SetAttr("var", name)
	for _, v := range values {
		f.Append(stanza.New(NSData, "value").SetText(v))
	}
	return f
}

// address is the bare JID of a local user.
func (s *Service) address(username string) string { return username + "@" + s.server }

// invalid answers a request with a value the directory cannot take.
func invalid(iq *stanza.Element, err error) *stanza.Element {
	var ie *invalidError
	if errors.As(err, &ie) {
		return stanza.ErrorReply(iq, stanza.NotAcceptable, ie.text)
	}
	return stanza.ErrorReply(iq, stanza.BadRequest, "")
}
