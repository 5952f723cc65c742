//! Syncthing REST client (issue 19).
