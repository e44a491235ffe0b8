-- Policy profiles become versions with a validity start, and the service-type mapping
-- becomes data: every derived deadline is then a pure function of the events and of
-- these tables, which the code installs and checks (protocolo/core/policy.py).
ALTER TABLE policy_profiles ADD COLUMN valid_from timestamptz NOT NULL DEFAULT '1970-01-01T00:00:00Z';
ALTER TABLE policy_profiles ALTER COLUMN valid_from DROP DEFAULT;
ALTER TABLE policy_profiles ADD CONSTRAINT policy_profiles_name_version UNIQUE (name, version);
ALTER TABLE policy_profiles ADD CONSTRAINT policy_profiles_name_valid_from UNIQUE (name, valid_from);

-- Which profile governs a contact that does not name one: by service type ('*': any other).
CREATE TABLE service_type_profiles (
    service_type text PRIMARY KEY,
    profile_name text NOT NULL
);

-- The version of profile p_name in force at p_at: the newest that had started by then.
CREATE FUNCTION profile_in_force(p_name text, p_at timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT profile FROM policy_profiles
     WHERE name = p_name AND valid_from <= p_at
     ORDER BY valid_from DESC LIMIT 1
$$;

-- The profile name for a service type (the '*' row for any type not listed).
CREATE FUNCTION service_profile_name(p_service_type text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT profile_name FROM service_type_profiles WHERE service_type = p_service_type),
        (SELECT profile_name FROM service_type_profiles WHERE service_type = '*'))
$$;
