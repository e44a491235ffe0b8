-- A regulator user belongs to one regulator (anatel, senacon, procon-sp, ...): it sees the
-- exports and reports made for that regulator and nothing else. Only regulator users carry
-- one; a regulator user without one (made before this column) sees no document.
ALTER TABLE api_users ADD COLUMN regulator text;
ALTER TABLE api_users ADD CONSTRAINT api_users_regulator_only
    CHECK (regulator IS NULL OR role = 'regulator');
