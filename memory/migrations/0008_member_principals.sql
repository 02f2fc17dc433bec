-- A membership names a principal, not a bare user id: an API-key user is
-- (home tenant, user), a JWT user is (issuer, sub). Before, a row
-- (tenant, user) admitted every user of that id from any tenant or issuer.
--
-- Existing rows are mapped only where their meaning is unambiguous: a row
-- whose user id has API keys in exactly one tenant becomes that tenant's
-- user. Any other row (the id is used by keys of several tenants, or by
-- none, as for JWT users) is kept as 'unresolved': it admits no one, and
-- members list shows it so that an admin re-adds it with --from-tenant or
-- --issuer. This fails closed: no principal gains access it did not have.
CREATE TABLE members_by_principal (
	tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	principal_kind   TEXT NOT NULL CHECK (principal_kind IN ('tenant', 'issuer', 'unresolved')),
	principal_source TEXT NOT NULL,
	user_id          TEXT NOT NULL,
	role             TEXT NOT NULL CHECK (role IN ('member', 'admin')),
	created_at       TEXT NOT NULL,
	updated_at       TEXT NOT NULL,
	PRIMARY KEY (tenant_id, principal_kind, principal_source, user_id)
) STRICT;

INSERT INTO members_by_principal (tenant_id, principal_kind, principal_source, user_id, role, created_at, updated_at)
SELECT m.tenant_id,
	CASE WHEN (SELECT count(DISTINCT k.tenant_id) FROM api_keys k WHERE k.user_id = m.user_id) = 1
		THEN 'tenant' ELSE 'unresolved' END,
	CASE WHEN (SELECT count(DISTINCT k.tenant_id) FROM api_keys k WHERE k.user_id = m.user_id) = 1
		THEN (SELECT min(k.tenant_id) FROM api_keys k WHERE k.user_id = m.user_id) ELSE '' END,
	m.user_id, m.role, m.created_at, m.updated_at
FROM members m;

DROP TABLE members;
ALTER TABLE members_by_principal RENAME TO members;
