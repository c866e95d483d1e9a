package fsm

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// ValidateKey checks a key against the format's rules: non-empty, valid
// UTF-8, no NUL byte, at most MaxKeySize bytes.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if len(key) > MaxKeySize {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrKeyTooLarge, len(key), MaxKeySize)
	}
	if strings.IndexByte(key, 0) >= 0 {
		return fmt.Errorf("%w: key %q holds a NUL byte", ErrInvalidKey, key)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: key %q is not valid UTF-8", ErrInvalidKey, key)
	}
	return nil
}

// ValidateTxn checks a transaction against the format's rules and the
// given limits. The FSM applies the same check to every transaction it
// applies, so a proposer that calls it first refuses exactly what the FSM
// would refuse, without a round through the log.
//
// Rules: at least one operation; every key valid (ValidateKey); values at
// most limits.MaxValueSize bytes (0 means DefaultMaxValueSize); no key
// touched by two operations, and no key or prefix lying under another
// operation's delete-prefix; known operation and precondition kinds;
// user, description, meta and idempotency key together at most MaxMetaSize
// bytes; an idempotency key of at most MaxKeySize bytes.
func ValidateTxn(t *Txn, limits Limits) error {
	if len(t.Ops) == 0 {
		return ErrEmptyTxn
	}
	maxValue := int(limits.MaxValueSize)
	if maxValue == 0 {
		maxValue = DefaultMaxValueSize
	}
	meta := len(t.User) + len(t.Description) + len(t.IdempotencyKey)
	for k, v := range t.Meta {
		meta += len(k) + len(v)
	}
	if meta > MaxMetaSize {
		return fmt.Errorf("%w: metadata is %d bytes (limit %d)", ErrInvalidTxn, meta, MaxMetaSize)
	}
	// The idempotency key is a bbolt key (idem and idemexp buckets), and
	// bbolt refuses keys over 32 KiB: a longer one would fail the whole
	// apply on every replica.
	for _, f := range []struct{ name, v string }{
		{"user", t.User}, {"description", t.Description}, {"idempotency key", t.IdempotencyKey},
	} {
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidTxn, f.name)
		}
	}
	for k, v := range t.Meta {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("%w: meta %q is not valid UTF-8", ErrInvalidTxn, k)
		}
	}
	if len(t.IdempotencyKey) > MaxKeySize {
		return fmt.Errorf("%w: idempotency key is %d bytes (limit %d)", ErrInvalidTxn, len(t.IdempotencyKey), MaxKeySize)
	}
	for i, p := range t.Preconditions {
		if err := ValidateKey(p.Key); err != nil {
			return fmt.Errorf("precondition %d: %w", i, err)
		}
		switch p.Kind {
		case CondExists, CondAbsent, CondRevision:
		case CondValue:
			if len(p.Value) > maxValue {
				return fmt.Errorf("precondition %d on %q: %w: %d bytes (limit %d)", i, p.Key, ErrValueTooLarge, len(p.Value), maxValue)
			}
		default:
			return fmt.Errorf("%w: precondition %d on %q has unknown kind %d", ErrInvalidTxn, i, p.Key, p.Kind)
		}
	}
	var prefixes []string
	seen := make(map[string]struct{}, len(t.Ops))
	for i, o := range t.Ops {
		if err := ValidateKey(o.Key); err != nil {
			return fmt.Errorf("operation %d: %w", i, err)
		}
		switch o.Kind {
		case OpPut:
			if len(o.Value) > maxValue {
				return fmt.Errorf("operation %d on %q: %w: %d bytes (limit %d)", i, o.Key, ErrValueTooLarge, len(o.Value), maxValue)
			}
		case OpDelete:
			if len(o.Value) != 0 {
				return fmt.Errorf("%w: operation %d: delete of %q carries a value", ErrInvalidTxn, i, o.Key)
			}
		case OpDeletePrefix:
			if len(o.Value) != 0 {
				return fmt.Errorf("%w: operation %d: delete-prefix %q carries a value", ErrInvalidTxn, i, o.Key)
			}
			prefixes = append(prefixes, o.Key)
		default:
			return fmt.Errorf("%w: operation %d on %q has unknown kind %d", ErrInvalidTxn, i, o.Key, o.Kind)
		}
		if _, dup := seen[o.Key]; dup {
			return fmt.Errorf("%w: %q", ErrDuplicateKey, o.Key)
		}
		seen[o.Key] = struct{}{}
	}
	for _, p := range prefixes {
		for _, o := range t.Ops {
			if o.Key != p && strings.HasPrefix(o.Key, p) {
				return fmt.Errorf("%w: %q lies under delete-prefix %q", ErrDuplicateKey, o.Key, p)
			}
		}
	}
	return nil
}

// ValidateMember checks a member record.
func ValidateMember(m *Member) error {
	if m.ID == "" {
		return fmt.Errorf("%w: member id is empty", ErrInvalidTxn)
	}
	return nil
}
