package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// StateVersion is the version of Encode's format; Decode refuses others.
const StateVersion = 1

// ChangeVersion is the version of EncodeChange's format; DecodeChange
// refuses others.
const ChangeVersion = 1

// stateJSON is the encoded form of a State: JSON with users and roles as
// slices sorted by name (permissions sorted by key, key before prefix;
// a user's roles sorted), so equal states encode to equal bytes on every
// member. The built-in root role is not stored. []byte fields are
// standard base64 (encoding/json's).
type stateJSON struct {
	Version  int        `json:"v"`
	Enabled  bool       `json:"enabled"`
	Revision uint64     `json:"revision"`
	TokenKey []byte     `json:"token_key,omitempty"`
	Users    []userJSON `json:"users"`
	Roles    []roleJSON `json:"roles"`
}

type userJSON struct {
	Name         string   `json:"name"`
	PasswordHash []byte   `json:"password_hash,omitempty"`
	Roles        []string `json:"roles"`
	Generation   uint64   `json:"generation"`
}

type roleJSON struct {
	Name        string           `json:"name"`
	Admin       bool             `json:"admin"`
	Permissions []permissionJSON `json:"permissions"`
}

type permissionJSON struct {
	Key    string `json:"key"`
	Prefix bool   `json:"prefix"`
	Access Access `json:"access"`
}

// Encode returns the deterministic encoding of s (versioned JSON): equal
// states give equal bytes, whatever the order of their maps. The fsm
// stores it; Decode reads it back.
func Encode(s *State) ([]byte, error) {
	j := stateJSON{
		Version:  StateVersion,
		Enabled:  s.Enabled,
		Revision: s.Revision,
		TokenKey: s.TokenKey,
		Users:    []userJSON{},
		Roles:    []roleJSON{},
	}
	for _, name := range s.UserNames() {
		u := s.Users[name]
		roles := slices.Clone(u.Roles)
		slices.Sort(roles)
		if roles == nil {
			roles = []string{}
		}
		j.Users = append(j.Users, userJSON{Name: u.Name, PasswordHash: u.PasswordHash, Roles: roles, Generation: u.Generation})
	}
	for _, name := range s.RoleNames() {
		if name == RootRole {
			continue
		}
		r := s.Roles[name]
		perms := slices.Clone(r.Permissions)
		slices.SortStableFunc(perms, comparePermission)
		pj := make([]permissionJSON, 0, len(perms))
		for _, p := range perms {
			pj = append(pj, permissionJSON(p))
		}
		j.Roles = append(j.Roles, roleJSON{Name: r.Name, Admin: r.Admin, Permissions: pj})
	}
	b, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("auth: encoding state: %w", err)
	}
	return b, nil
}

// Decode parses an encoding made by Encode and checks it: the version,
// valid names, keys and hashes, no duplicates, roles of users that exist,
// a TokenKeySize key exactly while enabled. Errors wrap ErrInvalid. The
// result holds the root role.
func Decode(b []byte) (*State, error) {
	var j stateJSON
	if err := strictUnmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%w: auth state: %v", ErrInvalid, err)
	}
	if j.Version != StateVersion {
		return nil, fmt.Errorf("%w: auth state version %d (this build reads %d)", ErrInvalid, j.Version, StateVersion)
	}
	s := New()
	s.Enabled, s.Revision = j.Enabled, j.Revision
	if j.Enabled {
		if len(j.TokenKey) != TokenKeySize {
			return nil, fmt.Errorf("%w: auth state: enabled with a %d-byte token key", ErrInvalid, len(j.TokenKey))
		}
		s.TokenKey = j.TokenKey
	} else if len(j.TokenKey) != 0 {
		return nil, fmt.Errorf("%w: auth state: token key while disabled", ErrInvalid)
	}
	for _, rj := range j.Roles {
		if err := ValidateName(rj.Name); err != nil {
			return nil, fmt.Errorf("auth state: role: %w", err)
		}
		if _, dup := s.Roles[rj.Name]; dup {
			return nil, fmt.Errorf("%w: auth state: role %q twice (or the root role stored)", ErrInvalid, rj.Name)
		}
		r := Role{Name: rj.Name, Admin: rj.Admin}
		for _, pj := range rj.Permissions {
			p := Permission(pj)
			if err := validatePermission(p, true); err != nil {
				return nil, fmt.Errorf("auth state: role %q: %w", rj.Name, err)
			}
			r.Permissions = append(r.Permissions, p)
		}
		slices.SortStableFunc(r.Permissions, comparePermission)
		if len(slices.CompactFunc(slices.Clone(r.Permissions), func(a, b Permission) bool { return comparePermission(a, b) == 0 })) != len(r.Permissions) {
			return nil, fmt.Errorf("%w: auth state: role %q: duplicate permission", ErrInvalid, rj.Name)
		}
		s.Roles[rj.Name] = r
	}
	for _, uj := range j.Users {
		if err := ValidateName(uj.Name); err != nil {
			return nil, fmt.Errorf("auth state: user: %w", err)
		}
		if _, dup := s.Users[uj.Name]; dup {
			return nil, fmt.Errorf("%w: auth state: user %q twice", ErrInvalid, uj.Name)
		}
		if len(uj.PasswordHash) > 0 {
			if err := validateHash(uj.PasswordHash); err != nil {
				return nil, fmt.Errorf("auth state: user %q: %w", uj.Name, err)
			}
		}
		roles := slices.Clone(uj.Roles)
		slices.Sort(roles)
		if len(slices.Compact(slices.Clone(roles))) != len(roles) {
			return nil, fmt.Errorf("%w: auth state: user %q: duplicate role", ErrInvalid, uj.Name)
		}
		for _, rn := range roles {
			if _, ok := s.Roles[rn]; !ok {
				return nil, fmt.Errorf("%w: auth state: user %q holds unknown role %q", ErrInvalid, uj.Name, rn)
			}
		}
		if len(roles) == 0 {
			roles = nil
		}
		s.Users[uj.Name] = User{Name: uj.Name, PasswordHash: uj.PasswordHash, Roles: roles, Generation: uj.Generation}
	}
	return s, nil
}

// changeJSON is the encoded form of a Change.
type changeJSON struct {
	Version      int             `json:"v"`
	Kind         ChangeKind      `json:"kind"`
	User         string          `json:"user,omitempty"`
	Role         string          `json:"role,omitempty"`
	PasswordHash []byte          `json:"password_hash,omitempty"`
	Admin        bool            `json:"admin,omitempty"`
	Permission   *permissionJSON `json:"permission,omitempty"`
	TokenKey     []byte          `json:"token_key,omitempty"`
}

// EncodeChange returns the encoding of c (versioned JSON) for a raft log
// entry. It does not validate c; Apply does.
func EncodeChange(c Change) ([]byte, error) {
	j := changeJSON{
		Version:      ChangeVersion,
		Kind:         c.Kind,
		User:         c.User,
		Role:         c.Role,
		PasswordHash: c.PasswordHash,
		Admin:        c.Admin,
		TokenKey:     c.TokenKey,
	}
	if c.Permission != (Permission{}) {
		p := permissionJSON(c.Permission)
		j.Permission = &p
	}
	b, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("auth: encoding change: %w", err)
	}
	return b, nil
}

// DecodeChange parses an encoding made by EncodeChange. It refuses an
// unknown version, unknown fields and trailing data (errors wrap
// ErrInvalid); it does not validate the change (Apply does).
func DecodeChange(b []byte) (Change, error) {
	var j changeJSON
	if err := strictUnmarshal(b, &j); err != nil {
		return Change{}, fmt.Errorf("%w: auth change: %v", ErrInvalid, err)
	}
	if j.Version != ChangeVersion {
		return Change{}, fmt.Errorf("%w: auth change version %d (this build reads %d)", ErrInvalid, j.Version, ChangeVersion)
	}
	c := Change{Kind: j.Kind, User: j.User, Role: j.Role, PasswordHash: j.PasswordHash, Admin: j.Admin, TokenKey: j.TokenKey}
	if j.Permission != nil {
		c.Permission = Permission(*j.Permission)
	}
	return c, nil
}

// strictUnmarshal decodes one JSON value into v, refusing unknown fields
// and trailing data.
func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if len(bytes.TrimSpace(b[d.InputOffset():])) != 0 {
		return errors.New("trailing data")
	}
	return nil
}

// String describes the change for logs, without secrets (no hash, no
// key).
func (c Change) String() string {
	var b strings.Builder
	b.WriteString(string(c.Kind))
	if c.User != "" {
		fmt.Fprintf(&b, " user=%q", c.User)
	}
	if c.Role != "" {
		fmt.Fprintf(&b, " role=%q", c.Role)
	}
	if c.Kind == AddRole && c.Admin {
		b.WriteString(" admin")
	}
	if c.Kind == GrantPermission || c.Kind == RevokePermission {
		fmt.Fprintf(&b, " %s", describeTarget(c.Permission))
		if c.Kind == GrantPermission {
			fmt.Fprintf(&b, " %s", c.Permission.Access)
		}
	}
	return b.String()
}
