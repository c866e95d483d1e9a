package httpapi

import "github.com/cairn-db/cairn/fsm"

// LogChunk makes fakeStore a feed.Source: Log bounded by a rough record
// size (its values and keys plus 64 bytes a record).
func (s *fakeStore) LogChunk(from uint64, limit, maxBytes int) ([]fsm.Record, uint64, int, error) {
	recs, at, err := s.Log(from, limit)
	if err != nil {
		return nil, at, 0, err
	}
	size := 0
	for i, r := range recs {
		n := 64
		for _, o := range r.Ops {
			n += len(o.Key) + len(o.Value)
		}
		if size+n > maxBytes {
			if i == 0 {
				return nil, at, n, nil
			}
			return recs[:i], at, 0, nil
		}
		size += n
	}
	return recs, at, 0, nil
}
