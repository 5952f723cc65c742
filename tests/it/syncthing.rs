//! Integration tests: Syncthing (two real instances on loopback).
