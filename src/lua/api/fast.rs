//! Conversions on the hot path of the LLM bindings, over Lua's C API. A request table is walked in one
//! protected call, reading keys and values straight off the stack (no handle per value), and a flat
//! result table is built in another. Anything outside the common shape makes the walk give up, and the
//! caller takes the serde path, which words the errors.
//!
//! Safety rules every function here keeps: only `lua_type`-checked reads (`lua_tolstring` is called on
//! strings only, so it never converts a value in place or allocates), no key is modified during
//! `lua_next`, and each walk leaves the stack as it found it.
use std::ffi::CStr;
use std::os::raw::c_int;
use std::ptr::null_mut;

use mlua::{Lua, Table, ffi};

use crate::core::llm::Message;

/// A value on the stack, as the walkers see it.
pub enum Item<'a> {
    Str(&'a [u8]),
    Int(i64),
    Num(f64),
    Bool(bool),
    Table,
    Other,
}

impl Item<'_> {
    /// A UTF-8 string, copied.
    pub fn string(&self) -> Option<String> {
        match self {
            Item::Str(b) => std::str::from_utf8(b).ok().map(str::to_string),
            _ => None,
        }
    }

    /// An integer (a float, even `16.0`, is not one: the serde path says so).
    pub fn integer(&self) -> Option<i64> {
        match *self {
            Item::Int(i) => Some(i),
            _ => None,
        }
    }

    pub fn number(&self) -> Option<f64> {
        match *self {
            Item::Int(i) => Some(i as f64),
            Item::Num(n) => Some(n),
            _ => None,
        }
    }
}

/// The value at `idx`.
///
/// # Safety
/// `idx` is a valid stack index of `state`; the returned borrow ends before that slot is popped.
pub unsafe fn item<'a>(state: *mut ffi::lua_State, idx: c_int) -> Item<'a> {
    unsafe {
        match ffi::lua_type(state, idx) {
            ffi::LUA_TSTRING => {
                let mut len = 0;
                let p = ffi::lua_tolstring(state, idx, &mut len);
                Item::Str(std::slice::from_raw_parts(p.cast(), len))
            }
            ffi::LUA_TNUMBER if ffi::lua_isinteger(state, idx) != 0 => {
                Item::Int(ffi::lua_tointegerx(state, idx, null_mut()))
            }
            ffi::LUA_TNUMBER => Item::Num(ffi::lua_tonumberx(state, idx, null_mut())),
            ffi::LUA_TBOOLEAN => Item::Bool(ffi::lua_toboolean(state, idx) != 0),
            ffi::LUA_TTABLE => Item::Table,
            _ => Item::Other,
        }
    }
}

/// Calls `f(key)` for each entry of the table at the top of the stack, with the value at the top while
/// `f` runs. `false` on a key that is not a string, or as soon as `f` returns `false`.
///
/// # Safety
/// The top of the stack is a table with room for two more slots; `f` leaves the stack as it found it.
pub unsafe fn fields(state: *mut ffi::lua_State, mut f: impl FnMut(&[u8]) -> bool) -> bool {
    unsafe {
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, -2) != 0 {
            let ok = match item(state, -2) {
                Item::Str(key) => f(key),
                _ => false,
            };
            ffi::lua_pop(state, 1);
            if !ok {
                ffi::lua_pop(state, 1);
                return false;
            }
        }
        true
    }
}

/// Calls `f()` for each item of the sequence at the top of the stack, with the item at the top while `f`
/// runs. `false` when the keys are not exactly 1, 2, 3, … in order, or as soon as `f` returns `false`.
///
/// # Safety
/// As for [`fields`].
pub unsafe fn items(state: *mut ffi::lua_State, mut f: impl FnMut() -> bool) -> bool {
    unsafe {
        let mut n = 0;
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, -2) != 0 {
            n += 1;
            let ok = matches!(item(state, -2), Item::Int(i) if i == n) && f();
            ffi::lua_pop(state, 1);
            if !ok {
                ffi::lua_pop(state, 1);
                return false;
            }
        }
        true
    }
}

/// A list of strings at the top of the stack.
///
/// # Safety
/// As for [`fields`].
pub unsafe fn strings(state: *mut ffi::lua_State) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let ok = unsafe {
        items(state, || match item(state, -1).string() {
            Some(s) => {
                out.push(s);
                true
            }
            None => false,
        })
    };
    ok.then_some(out)
}

/// A list of `{role, content, images?}` messages at the top of the stack.
///
/// # Safety
/// As for [`fields`].
pub unsafe fn messages(state: *mut ffi::lua_State) -> Option<Vec<Message>> {
    let mut out = Vec::new();
    let ok = unsafe {
        items(state, || {
            if !matches!(item(state, -1), Item::Table) {
                return false;
            }
            let (mut role, mut content, mut images) = (None, None, None);
            let ok = fields(state, |key| {
                let v = item(state, -1);
                let got = match key {
                    b"role" => v.string().map(|s| role = Some(s)),
                    b"content" => v.string().map(|s| content = Some(s)),
                    b"images" if matches!(v, Item::Table) => {
                        strings(state).map(|l| images = Some(l))
                    }
                    _ => None,
                };
                got.is_some()
            });
            match (ok, role, content) {
                (true, Some(role), Some(content)) => {
                    out.push(Message {
                        role,
                        content,
                        images,
                    });
                    true
                }
                _ => false,
            }
        })
    };
    ok.then_some(out)
}

/// Runs `walk` with `t` at the top of the stack, in one protected call, with enough stack for nested
/// walks. `walk` returns `false` to give up.
pub fn walk(lua: &Lua, t: &Table, walk: impl FnOnce(*mut ffi::lua_State) -> bool) -> bool {
    let mut ok = false;
    // SAFETY: the closure only runs the walkers above on the table mlua pushed for it, after making room
    // on the stack; mlua restores the stack afterwards.
    let ran = unsafe {
        lua.exec_raw::<()>(t, |state| {
            ok = ffi::lua_checkstack(state, 16) != 0 && walk(state);
        })
    };
    ran.is_ok() && ok
}

/// A field of a flat result table.
pub enum Out<'a> {
    Str(&'a str),
    Int(i64),
    Num(f64),
}

/// A new table with `fields`, built in one protected call. Keys are C strings so that Lua finds each in
/// its cache of C-string keys (by address) instead of hashing it again for every table.
pub fn record(lua: &Lua, fields: &[(&CStr, Out<'_>)]) -> mlua::Result<Table> {
    // SAFETY: a table and one value at a time are pushed (room checked); each value is popped into the
    // table, which is left as the call's only result. The table is new and has no metatable, so
    // `lua_setfield` is a plain set.
    unsafe {
        lua.exec_raw::<Table>((), |state| {
            if ffi::lua_checkstack(state, 3) == 0 {
                return;
            }
            ffi::lua_createtable(state, 0, fields.len() as c_int);
            for (key, value) in fields {
                match *value {
                    Out::Str(s) => {
                        ffi::lua_pushlstring(state, s.as_ptr().cast(), s.len());
                    }
                    Out::Int(i) => ffi::lua_pushinteger(state, i),
                    Out::Num(n) => ffi::lua_pushnumber(state, n),
                }
                ffi::lua_setfield(state, -2, key.as_ptr());
            }
        })
    }
}
