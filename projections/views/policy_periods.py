"""The policy profile versions as periods, for a view to join on.

``profile_in_force(name, at)`` (migration 0002) is the version of a profile that had
started by ``at``, the newest such, and ``service_profile_name(type)`` the profile a
service type maps to. As SQL functions they run once per row, a function call each; the
same answers as joins let the planner hash the few versions and mappings once per batch.
A version is in force from its ``valid_from`` until the next version's of the same name
(``(name, valid_from)`` is unique, so at most one period holds at any time). The
``interactions`` view, which derives a profile for every contact opened, joins; views that
derive one for few rows (recordings, retrieval requests) call the functions.
"""

#: name, profile, valid_from, valid_until (null: still in force).
PROFILE_PERIODS = """(SELECT name, profile, valid_from,
               lead(valid_from) OVER (PARTITION BY name ORDER BY valid_from) AS valid_until
          FROM policy_profiles)"""

#: After :func:`service_profile_joins`: the profile name of the service type (its own
#: mapping, else the ``'*'`` one), as ``service_profile_name`` gives it.
SERVICE_PROFILE_NAME = "coalesce(st.profile_name, st_any.profile_name)"


def in_force(alias: str, name: str, at: str) -> str:
    """The join condition: period ``alias`` is profile ``name``'s version in force at ``at``."""
    return (f"{alias}.name = {name} AND {alias}.valid_from <= {at}"
            f" AND ({alias}.valid_until IS NULL OR {at} < {alias}.valid_until)")


def service_profile_joins(service_type: str) -> str:
    """The joins :data:`SERVICE_PROFILE_NAME` reads (a service type has at most one mapping)."""
    return (f"LEFT JOIN service_type_profiles st ON st.service_type = {service_type}"
            " LEFT JOIN service_type_profiles st_any ON st_any.service_type = '*'")
