-- OAuth scopes of an API key (keys create --scopes): space-separated
-- scope names; '' (every key created before scopes existed, and every key
-- created without --scopes) means all scopes.
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '';
