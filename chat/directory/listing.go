package directory

import (
	"context"
	"errors"
	"strconv"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

const listingInstructions = "List yourself in this server's people directory so that others can find you " +
	"by nickname, country, language or interest. Your address is shown with your listing. " +
	"Unregister to be removed at any time."

// listingForm answers a registration get: the user's listing as a form,
// with <registered/> when they are listed (XEP-0077 §3.1, data form of
// §6).
func (s *Service) listingForm(ctx context.Context, sess Session, iq *stanza.Element) *stanza.Element {
	user := sess.JID().Localpart()
	e, err := s.st.DirectoryEntry(ctx, user)
	listed := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return s.internalError(sess, iq, "load listing", err)
	}
	q := stanza.New(NSRegister, "query")
	if listed {
		q.Append(stanza.New(NSRegister, "registered"))
	}
	q.Append(
		stanza.New(NSRegister, "instructions").SetText(listingInstructions),
		stanza.New(NSRegister, "nick").SetText(e.Nick),
	)
	nick := field("text-single", fieldNick, "Nickname", valuesOf(e.Nick)...)
	nick.Append(stanza.New(NSData, "required"))
	q.Append(stanza.New(NSData, "x").SetAttr("type", "form").Append(
		stanza.New(NSData, "title").SetText("People directory listing"),
		stanza.New(NSData, "instructions").SetText(listingInstructions),
		formType(NSRegister),
		nick,
		field("text-single", fieldCountry, "Country (two-letter code, e.g. DE)", valuesOf(e.Country)...),
		field("text-multi", fieldLanguages, "Languages you speak (codes such as en or pt-BR, one a line)", e.Languages...),
		field("text-multi", fieldInterests, "Interests (one a line)", e.Interests...),
	))
	return stanza.Result(iq, q)
}

func valuesOf(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// changeListing answers a registration set: a submitted form lists the
// user or replaces their listing, <remove/> unlists them, a legacy <nick/>
// changes only the nickname.
func (s *Service) changeListing(ctx context.Context, sess Session, iq, q *stanza.Element) *stanza.Element {
	user := sess.JID().Localpart()
	if q.Child(NSRegister, "remove") != nil {
		if err := s.st.DeleteDirectoryEntry(ctx, user); err != nil {
			return s.internalError(sess, iq, "remove listing", err)
		}
		s.log.Info("directory: listing removed", "jid", sess.JID().Bare().String())
		return stanza.Result(iq)
	}
	var e store.DirectoryEntry
	if x := dataForm(q); x != nil {
		switch x.Attr("type") {
		case "cancel":
			return stanza.Result(iq)
		case "submit":
		default:
			return stanza.ErrorReply(iq, stanza.BadRequest, "the listing form is submitted with type='submit'")
		}
		v := formValues(x)
		if ft := first(v["FORM_TYPE"]); ft != "" && ft != NSRegister {
			return stanza.ErrorReply(iq, stanza.BadRequest, "not a listing form")
		}
		var err error
		if e, err = parseListing(v); err != nil {
			return invalid(iq, err)
		}
	} else if n := q.Child(NSRegister, "nick"); n != nil {
		// Legacy registration: the nickname only; the rest is kept.
		old, err := s.st.DirectoryEntry(ctx, user)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return s.internalError(sess, iq, "load listing", err)
		}
		e = old
		if e.Nick, err = cleanText("the nickname", n.Text(), MaxNickRunes); err != nil {
			return invalid(iq, err)
		}
	} else {
		return stanza.ErrorReply(iq, stanza.BadRequest, "submit the listing form, a nickname or <remove/>")
	}
	if e.Nick == "" {
		return stanza.ErrorReply(iq, stanza.NotAcceptable, "a nickname is required")
	}
	e.Username = user
	e.Updated = s.now()
	if err := s.st.PutDirectoryEntry(ctx, e); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return stanza.ErrorReply(iq, stanza.RegistrationRequired, "no account for this address")
		}
		return s.internalError(sess, iq, "save listing", err)
	}
	s.log.Info("directory: listing saved", "jid", sess.JID().Bare().String())
	return stanza.Result(iq)
}

// parseListing validates and normalises a submitted listing form.
func parseListing(v map[string][]string) (store.DirectoryEntry, error) {
	var (
		e   store.DirectoryEntry
		err error
	)
	if e.Nick, err = cleanText("the nickname", first(v[fieldNick]), MaxNickRunes); err != nil {
		return e, err
	}
	if e.Country, err = parseCountry(first(v[fieldCountry])); err != nil {
		return e, err
	}
	seen := make(map[string]bool)
	for _, l := range splitList(v[fieldLanguages], true) {
		tag, err := parseLanguage(l)
		if err != nil {
			return e, err
		}
		if !seen[tag] {
			seen[tag] = true
			e.Languages = append(e.Languages, tag)
		}
	}
	if len(e.Languages) > MaxLanguages {
		return e, &invalidError{"list at most " + strconv.Itoa(MaxLanguages) + " languages"}
	}
	for _, in := range splitList(v[fieldInterests], false) {
		c, err := cleanText("an interest", in, MaxInterestRunes)
		if err != nil {
			return e, err
		}
		if c != "" {
			e.Interests = append(e.Interests, c)
		}
	}
	if len(e.Interests) > MaxInterests {
		return e, &invalidError{"list at most " + strconv.Itoa(MaxInterests) + " interests"}
	}
	return e, nil
}
