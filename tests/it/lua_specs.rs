//! Integration tests: lua_specs.
