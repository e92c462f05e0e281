package chat

import (
	"context"

	"poosms.org/poosms/stanza"
)

var pepFeatures = []string{}

type capsCache struct{}

func newCapsCache() *capsCache { return &capsCache{} }

func (s *Service) serverResponse(ctx context.Context, sess Session, el *stanza.Element) {}
