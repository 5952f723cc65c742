//! Conversions on the hot path of the LLM bindings, over Lua's C API. A request table is read straight
//! off the stack (no handle per value), and a flat result table is built straight onto it. Anything
//! outside the common shape makes the reader give up, and the caller takes the serde path, which words
//! the errors.
//!
//! Safety rules every function here keeps: only `lua_type`-checked reads (`lua_tolstring` is called on
//! strings only, so it never converts a value in place or allocates), no key is modified during
//! `lua_next`, and each walk leaves the stack as it found it.
//!
//! An async binding takes [`Arg`] and returns [`Ret`], whose stack conversions mlua calls in place of its
//! own: the argument is read where mlua left it, and the result pushed where mlua expects it, with no
//! protected call and no handle in between. Neither can raise a Lua error there: the reads above cannot,
//! and the pushes could only fail to allocate, which with no memory limit set (baton never sets one, see
//! the test `lua_runtime_sets_no_memory_limit`) aborts in mlua's allocator instead of raising. These two conversions are
//! mlua's `#[doc(hidden)]` stack methods, pinned with the mlua version in Cargo.toml.
use std::ffi::CStr;
use std::os::raw::c_int;
use std::ptr::null_mut;

use mlua::state::RawLua;
use mlua::{FromLuaMulti, IntoLuaMulti, Lua, MultiValue, Table, Value, ffi};

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

/// A request read off the stack by [`Arg`].
pub trait FromTable: Sized {
    /// Reads the table at the top of the stack; `None` to give up.
    ///
    /// # Safety
    /// As for [`fields`], with room for the nested walks (16 slots).
    unsafe fn read(state: *mut ffi::lua_State) -> Option<Self>;
}

/// An argument read as `T` when it is a table of the common shape, else kept as a value for the serde path.
pub enum Arg<T> {
    Read(T),
    Value(Value),
}

impl<T: FromTable> FromLuaMulti for Arg<T> {
    fn from_lua_multi(values: MultiValue, lua: &Lua) -> mlua::Result<Self> {
        let v = values.into_iter().next().unwrap_or(Value::Nil);
        let mut read = None;
        if let Value::Table(t) = &v {
            // SAFETY: the closure reads the table mlua pushed for it, after making room on the stack;
            // mlua restores the stack afterwards.
            let ran = unsafe {
                lua.exec_raw::<()>(t, |state| {
                    if ffi::lua_checkstack(state, 16) != 0 {
                        read = T::read(state);
                    }
                })
            };
            ran?;
        }
        Ok(read.map_or(Arg::Value(v), Arg::Read))
    }

    unsafe fn from_stack_args(
        nargs: c_int,
        i: usize,
        to: Option<&str>,
        lua: &RawLua,
    ) -> mlua::Result<Self> {
        // SAFETY: mlua calls this with the `nargs` arguments at the top of the current state's stack. The
        // first is copied to the top (room checked) for the reader, which cannot raise (module docs), and
        // popped again.
        unsafe {
            let state = lua.state();
            if nargs >= 1
                && ffi::lua_type(state, -nargs) == ffi::LUA_TTABLE
                && ffi::lua_checkstack(state, 17) != 0
            {
                ffi::lua_pushvalue(state, -nargs);
                let read = T::read(state);
                ffi::lua_pop(state, 1);
                if let Some(read) = read {
                    return Ok(Arg::Read(read));
                }
            }
            <Value as FromLuaMulti>::from_stack_args(nargs, i, to, lua).map(Arg::Value)
        }
    }
}

/// A field of a flat result table.
pub enum Out<'a> {
    Str(&'a str),
    Int(i64),
    Num(f64),
    Bool(bool),
}

/// A result that is a flat table of fields.
pub trait ToRecord {
    /// How many fields [`ToRecord::fields`] gives (the table is made that size).
    fn count(&self) -> usize;

    /// Its fields, in order; keys are C strings so that Lua finds each in its cache of C-string keys (by
    /// address) instead of hashing it again for every table.
    fn fields(&self, put: &mut dyn FnMut(&CStr, Out<'_>));
}

/// A binding's result: a record pushed as a new table, or any value.
pub enum Ret<R> {
    Record(R),
    Value(Value),
}

impl<R: ToRecord> IntoLuaMulti for Ret<R> {
    fn into_lua_multi(self, lua: &Lua) -> mlua::Result<MultiValue> {
        match self {
            Ret::Record(r) => record(lua, &r)?.into_lua_multi(lua),
            Ret::Value(v) => v.into_lua_multi(lua),
        }
    }

    unsafe fn push_into_stack_multi(self, lua: &RawLua) -> mlua::Result<c_int> {
        match self {
            // SAFETY: pushes onto the current state's stack, where mlua takes its results; room is
            // checked, and the pushes cannot raise (module docs).
            Ret::Record(r) => unsafe {
                let state = lua.state();
                if ffi::lua_checkstack(state, 3) == 0 {
                    return Err(mlua::Error::StackError);
                }
                push_record(state, &r);
                Ok(1)
            },
            // SAFETY: mlua's own conversion, with the same contract.
            Ret::Value(v) => unsafe { v.push_into_stack_multi(lua) },
        }
    }
}

/// A new table with `r`'s fields, built in one protected call (for callers that are not on mlua's stack
/// conversions).
pub fn record(lua: &Lua, r: &impl ToRecord) -> mlua::Result<Table> {
    // SAFETY: room is checked and the table is left as the call's only result.
    unsafe {
        lua.exec_raw::<Table>((), |state| {
            if ffi::lua_checkstack(state, 3) != 0 {
                push_record(state, r);
            }
        })
    }
}

/// Pushes a new table with `r`'s fields.
///
/// # Safety
/// Room for three slots. The table is new and has no metatable, so `lua_setfield` is a plain set; one
/// value at a time is pushed and popped into it.
unsafe fn push_record(state: *mut ffi::lua_State, r: &impl ToRecord) {
    unsafe {
        ffi::lua_createtable(state, 0, r.count() as c_int);
        r.fields(&mut |key, value| {
            match value {
                Out::Str(s) => {
                    ffi::lua_pushlstring(state, s.as_ptr().cast(), s.len());
                }
                Out::Int(i) => ffi::lua_pushinteger(state, i),
                Out::Num(n) => ffi::lua_pushnumber(state, n),
                Out::Bool(b) => ffi::lua_pushboolean(state, b as c_int),
            }
            ffi::lua_setfield(state, -2, key.as_ptr());
        });
    }
}
