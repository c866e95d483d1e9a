package auth

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// ChangeKind names the kind of an auth change.
type ChangeKind string

// Change kinds. Each lists the Change fields it uses; the others are
// ignored.
const (
	// AddUser creates User with PasswordHash (empty: the user
	// authenticates only by client certificate) and no roles.
	AddUser ChangeKind = "add_user"
	// DeleteUser removes User; its tokens stop being valid at once.
	DeleteUser ChangeKind = "delete_user"
	// SetPassword replaces User's PasswordHash (which must not be empty)
	// and moves its Generation, revoking its tokens.
	SetPassword ChangeKind = "set_password"
	// GrantRole gives Role to User. Granting a role the user holds is a
	// no-op that still counts as a change.
	GrantRole ChangeKind = "grant_role"
	// RevokeRole takes Role from User.
	RevokeRole ChangeKind = "revoke_role"
	// AddRole creates Role with the Admin flag and no permissions.
	AddRole ChangeKind = "add_role"
	// DeleteRole removes Role, and removes it from every user holding it.
	DeleteRole ChangeKind = "delete_role"
	// GrantPermission adds Permission to Role. A permission on the same
	// key (or prefix) is replaced: its access becomes Permission.Access.
	GrantPermission ChangeKind = "grant_permission"
	// RevokePermission removes Role's permission on Permission.Key with
	// the same Prefix flag (Permission.Access is ignored).
	RevokePermission ChangeKind = "revoke_permission"
	// Enable turns auth on with TokenKey (TokenKeySize random bytes made
	// by the proposing member). Enabling an enabled state keeps the
	// current key (live tokens stay valid).
	Enable ChangeKind = "enable"
	// Disable turns auth off and drops the token key: every token dies,
	// and a later Enable brings a new key.
	Disable ChangeKind = "disable"
)

// Change is one auth change, as carried in a raft log entry (see
// EncodeChange). Kind says which fields are used.
type Change struct {
	// Kind is what the change does.
	Kind ChangeKind
	// User names the user (AddUser, DeleteUser, SetPassword, GrantRole,
	// RevokeRole).
	User string
	// Role names the role (GrantRole, RevokeRole, AddRole, DeleteRole,
	// GrantPermission, RevokePermission).
	Role string
	// PasswordHash is a bcrypt hash made by HashPassword on the proposing
	// member (AddUser: optional; SetPassword: required).
	PasswordHash []byte
	// Admin is the new role's admin flag (AddRole).
	Admin bool
	// Permission is granted (GrantPermission) or names the permission to
	// revoke by Key and Prefix (RevokePermission).
	Permission Permission
	// TokenKey is the HMAC key, TokenKeySize random bytes made by the
	// proposing member (Enable).
	TokenKey []byte
}

// Validate checks the change on its own, without a state: a known kind,
// valid names for the fields the kind uses, a bcrypt hash, a valid
// permission, a TokenKeySize key for Enable. Apply calls it first; a
// member may call it before proposing. Errors wrap ErrInvalid.
func (c Change) Validate() error {
	switch c.Kind {
	case AddUser, DeleteUser, SetPassword, GrantRole, RevokeRole:
		if err := ValidateName(c.User); err != nil {
			return fmt.Errorf("%s: user: %w", c.Kind, err)
		}
	}
	switch c.Kind {
	case GrantRole, RevokeRole, AddRole, DeleteRole, GrantPermission, RevokePermission:
		if err := ValidateName(c.Role); err != nil {
			return fmt.Errorf("%s: role: %w", c.Kind, err)
		}
	}
	switch c.Kind {
	case AddUser:
		if len(c.PasswordHash) > 0 {
			if err := validateHash(c.PasswordHash); err != nil {
				return fmt.Errorf("%s: %w", c.Kind, err)
			}
		}
	case SetPassword:
		if err := validateHash(c.PasswordHash); err != nil {
			return fmt.Errorf("%s: %w", c.Kind, err)
		}
	case GrantPermission:
		if err := validatePermission(c.Permission, true); err != nil {
			return fmt.Errorf("%s: %w", c.Kind, err)
		}
	case RevokePermission:
		if err := validatePermission(c.Permission, false); err != nil {
			return fmt.Errorf("%s: %w", c.Kind, err)
		}
	case Enable:
		if len(c.TokenKey) != TokenKeySize {
			return fmt.Errorf("%w: enable: token key is %d bytes (want %d)", ErrInvalid, len(c.TokenKey), TokenKeySize)
		}
	case DeleteUser, GrantRole, RevokeRole, AddRole, DeleteRole, Disable:
	default:
		return fmt.Errorf("%w: unknown change kind %q", ErrInvalid, c.Kind)
	}
	return nil
}

// ValidateName checks a user or role name: 1 to MaxNameSize bytes, an
// ASCII letter or digit first, then letters, digits, '.', '_', '@' or
// '-'. Errors wrap ErrInvalid.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalid)
	}
	if len(name) > MaxNameSize {
		return fmt.Errorf("%w: name is %d bytes (limit %d)", ErrInvalid, len(name), MaxNameSize)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum || i > 0 && (c == '.' || c == '_' || c == '@' || c == '-') {
			continue
		}
		return fmt.Errorf("%w: name %q: character %q at %d (want [A-Za-z0-9][A-Za-z0-9._@-]*)", ErrInvalid, name, c, i)
	}
	return nil
}

// validateHash checks that h is a bcrypt hash.
func validateHash(h []byte) error {
	if len(h) == 0 {
		return fmt.Errorf("%w: empty password hash", ErrInvalid)
	}
	if _, err := bcrypt.Cost(h); err != nil {
		return fmt.Errorf("%w: password hash is not a bcrypt hash", ErrInvalid)
	}
	return nil
}

// validatePermission checks a permission's key (non-empty unless a
// prefix, at most MaxKeySize bytes, UTF-8, no NUL) and, when
// checkAccess, its access.
func validatePermission(p Permission, checkAccess bool) error {
	if !p.Prefix && p.Key == "" {
		return fmt.Errorf("%w: permission on the empty key (use prefix \"\" for every key)", ErrInvalid)
	}
	if len(p.Key) > MaxKeySize {
		return fmt.Errorf("%w: permission key is %d bytes (limit %d)", ErrInvalid, len(p.Key), MaxKeySize)
	}
	if strings.IndexByte(p.Key, 0) >= 0 || !utf8.ValidString(p.Key) {
		return fmt.Errorf("%w: permission key %q is not valid UTF-8 without NUL", ErrInvalid, p.Key)
	}
	if checkAccess && !p.Access.valid() {
		return fmt.Errorf("%w: permission access %s", ErrInvalid, p.Access)
	}
	return nil
}

// Apply returns the state that results from applying c to s, with
// Revision s.Revision+1, or an error and no state. s itself is never
// modified, so readers of s are unaffected.
//
// Errors: ErrInvalid for a malformed change (Validate) or one touching
// the root role; ErrNotFound for an unknown user, role or permission;
// ErrExists for an existing user or role; ErrNoRoot for Enable with no
// user holding the root role, and for DeleteUser or RevokeRole that
// would leave an enabled state with none.
func (s *State) Apply(c Change) (*State, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	n := s.Clone()
	n.Revision = s.Revision + 1
	if err := n.apply(c); err != nil {
		return nil, err
	}
	return n, nil
}

// apply mutates s (a private clone) by c, which has been validated.
func (s *State) apply(c Change) error {
	switch c.Kind {
	case AddUser:
		if _, ok := s.Users[c.User]; ok {
			return fmt.Errorf("%w: user %q", ErrExists, c.User)
		}
		s.Users[c.User] = User{Name: c.User, PasswordHash: slices.Clone(c.PasswordHash), Generation: s.Revision}
	case DeleteUser:
		if _, ok := s.Users[c.User]; !ok {
			return fmt.Errorf("%w: user %q", ErrNotFound, c.User)
		}
		delete(s.Users, c.User)
		if s.Enabled && !s.hasUsableRoot() {
			return fmt.Errorf("%w: deleting user %q would leave none while auth is enabled", ErrNoRoot, c.User)
		}
	case SetPassword:
		u, ok := s.Users[c.User]
		if !ok {
			return fmt.Errorf("%w: user %q", ErrNotFound, c.User)
		}
		u.PasswordHash = slices.Clone(c.PasswordHash)
		u.Generation = s.Revision
		s.Users[c.User] = u
	case GrantRole:
		u, ok := s.Users[c.User]
		if !ok {
			return fmt.Errorf("%w: user %q", ErrNotFound, c.User)
		}
		if _, ok := s.Role(c.Role); !ok {
			return fmt.Errorf("%w: role %q", ErrNotFound, c.Role)
		}
		if i, found := slices.BinarySearch(u.Roles, c.Role); !found {
			u.Roles = slices.Insert(u.Roles, i, c.Role)
		}
		s.Users[c.User] = u
	case RevokeRole:
		u, ok := s.Users[c.User]
		if !ok {
			return fmt.Errorf("%w: user %q", ErrNotFound, c.User)
		}
		i, found := slices.BinarySearch(u.Roles, c.Role)
		if !found {
			return fmt.Errorf("%w: user %q does not hold role %q", ErrNotFound, c.User, c.Role)
		}
		u.Roles = slices.Delete(u.Roles, i, i+1)
		s.Users[c.User] = u
		if c.Role == RootRole && s.Enabled && !s.hasUsableRoot() {
			return fmt.Errorf("%w: revoking root from %q would leave none while auth is enabled", ErrNoRoot, c.User)
		}
	case AddRole:
		if _, ok := s.Role(c.Role); ok {
			return fmt.Errorf("%w: role %q", ErrExists, c.Role)
		}
		s.Roles[c.Role] = Role{Name: c.Role, Admin: c.Admin}
	case DeleteRole:
		if c.Role == RootRole {
			return fmt.Errorf("%w: the root role cannot be deleted", ErrInvalid)
		}
		if _, ok := s.Roles[c.Role]; !ok {
			return fmt.Errorf("%w: role %q", ErrNotFound, c.Role)
		}
		delete(s.Roles, c.Role)
		for name, u := range s.Users {
			if i, found := slices.BinarySearch(u.Roles, c.Role); found {
				u.Roles = slices.Delete(u.Roles, i, i+1)
				s.Users[name] = u
			}
		}
	case GrantPermission, RevokePermission:
		if c.Role == RootRole {
			return fmt.Errorf("%w: the root role cannot be changed", ErrInvalid)
		}
		r, ok := s.Roles[c.Role]
		if !ok {
			return fmt.Errorf("%w: role %q", ErrNotFound, c.Role)
		}
		i, found := slices.BinarySearchFunc(r.Permissions, c.Permission, comparePermission)
		if c.Kind == GrantPermission {
			if found {
				r.Permissions[i].Access = c.Permission.Access
			} else {
				r.Permissions = slices.Insert(r.Permissions, i, c.Permission)
			}
		} else {
			if !found {
				return fmt.Errorf("%w: role %q has no permission on %s", ErrNotFound, c.Role, describeTarget(c.Permission))
			}
			r.Permissions = slices.Delete(r.Permissions, i, i+1)
		}
		s.Roles[c.Role] = r
	case Enable:
		if !s.hasUsableRoot() {
			return fmt.Errorf("%w: create a user, grant it role %q, then enable", ErrNoRoot, RootRole)
		}
		if !s.Enabled {
			s.Enabled = true
			s.TokenKey = slices.Clone(c.TokenKey)
		}
	case Disable:
		s.Enabled = false
		s.TokenKey = nil
	default:
		return fmt.Errorf("%w: unknown change kind %q", ErrInvalid, c.Kind)
	}
	return nil
}

// comparePermission orders permissions by key, then key before prefix;
// access is not part of the identity of a permission.
func comparePermission(a, b Permission) int {
	if c := strings.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	switch {
	case a.Prefix == b.Prefix:
		return 0
	case !a.Prefix:
		return -1
	}
	return 1
}

// describeTarget names a permission's key or prefix for messages.
func describeTarget(p Permission) string {
	if p.Prefix {
		return fmt.Sprintf("prefix %q", p.Key)
	}
	return fmt.Sprintf("key %q", p.Key)
}
