package signaling

import (
	"encoding/base64"

	"github.com/xdg-go/scram"
)

func scramClient(user, pass string) (*scram.ClientConversation, error) {
	c, err := scram.SHA256.NewClient(user, pass, "")
	if err != nil {
		return nil, err
	}
	return c.NewConversation(), nil
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func unb64(s string) string {
	b, _ := base64.StdEncoding.DecodeString(s)
	return string(b)
}
