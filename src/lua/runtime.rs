//! How every entry point (run, REPL, daemon, benches) drives Lua: a current-thread tokio runtime with a
//! `LocalSet`, so async Lua functions, spawned coroutines and local tasks share one thread; and the limits
//! every Lua state has: a memory limit and an instruction hook that raises when the work is interrupted
//! (Ctrl-C, the daemon stopping) or past a deadline (`baton.timeout`, a job's timeout, a fleet file's time
//! limit), wherever the Lua is, also inside a callback a C function called.
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use mlua::{HookTriggers, Lua, VmState};

/// Runs `fut` to completion on a fresh current-thread runtime inside a `LocalSet`. Fails only when the
/// runtime cannot be built (the OS refused its timer or I/O driver).
pub fn block_on<F: Future>(fut: F) -> std::io::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(tokio::task::LocalSet::new().block_on(&rt, fut))
}

/// Like [`block_on`], but what the runtime still has under way when `fut` ends (a blocking read of stdin
/// that only a client closing its end would finish) is left behind instead of waited for: for servers that
/// end on Ctrl-C.
pub fn block_on_leaving<F: Future>(fut: F) -> std::io::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = tokio::task::LocalSet::new().block_on(&rt, fut);
    rt.shutdown_background();
    Ok(out)
}

/// Every Lua state's memory limit unless the fleet (`limits.memory`) or a job (`memory`) says otherwise.
pub const DEFAULT_MEMORY: u64 = 1 << 30;

/// How many Lua instructions run between two checks of the [`Guard`] (a check reads one atomic flag and,
/// when a deadline is set, the monotonic clock).
const CHECK_EVERY: u32 = 10_000;

/// A request to stop whatever Lua runs, from any thread (a signal watcher, the daemon's scheduler): the
/// instruction hook raises `why` in the running Lua, also inside a callback called by C (a `table.sort`
/// comparator, a `gsub` function).
#[derive(Clone, Default)]
pub struct Interrupt(Arc<InterruptInner>);

#[derive(Default)]
struct InterruptInner {
    set: AtomicBool,
    why: Mutex<String>,
}

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the Lua to stop with the error `why` (the first reason given wins).
    pub fn trigger(&self, why: &str) {
        if let Ok(mut w) = self.0.why.lock() {
            if !self.0.set.load(Ordering::SeqCst) {
                *w = why.to_string();
            }
            self.0.set.store(true, Ordering::SeqCst);
        }
    }

    pub fn is_set(&self) -> bool {
        self.0.set.load(Ordering::SeqCst)
    }

    /// Forgets a handled request (the REPL, back at its prompt).
    pub fn clear(&self) {
        self.0.set.store(false, Ordering::SeqCst);
    }

    fn reason(&self) -> String {
        self.0
            .why
            .lock()
            .map(|w| w.clone())
            .unwrap_or_else(|_| "interrupted".into())
    }
}

/// What the instruction hook of a Lua state checks: its interrupt, its own deadline (a scheduled job's
/// timeout, the time limit of evaluating a fleet or schedule file) and the deadlines of the `baton.timeout`
/// calls (and agent tool calls, served MCP calls) whose work is running right now. Kept in the state's app
/// data. The deadlines are shared with the [`watchdog`], which ends the process when C code (a
/// `string.find` that backtracks for minutes) keeps the hook from ever running past one of them.
#[derive(Default)]
pub struct Guard {
    interrupt: RefCell<Interrupt>,
    bounds: Arc<Mutex<Bounds>>,
}

/// The bounds in force: the state's own deadline and the scopes being polled right now (innermost last).
#[derive(Default)]
struct Bounds {
    deadline: Option<(Instant, String)>,
    scopes: Vec<(Instant, String)>,
}

impl Bounds {
    /// The bound that passed longest ago (at or before `now`).
    fn passed(&self, now: Instant) -> Option<(Instant, String)> {
        self.deadline
            .iter()
            .chain(self.scopes.iter())
            .filter(|(d, _)| now >= *d)
            .min_by_key(|(d, _)| *d)
            .cloned()
    }
}

fn lock(bounds: &Mutex<Bounds>) -> std::sync::MutexGuard<'_, Bounds> {
    bounds.lock().unwrap_or_else(|e| e.into_inner())
}

impl Guard {
    fn check(&self) -> mlua::Result<()> {
        let interrupt = self.interrupt.borrow();
        if interrupt.is_set() {
            return Err(mlua::Error::runtime(interrupt.reason()));
        }
        let bounds = lock(&self.bounds);
        if bounds.deadline.is_none() && bounds.scopes.is_empty() {
            return Ok(());
        }
        match bounds.passed(Instant::now()) {
            Some((_, msg)) => Err(mlua::Error::runtime(msg)),
            None => Ok(()),
        }
    }
}

/// Gives `lua` its memory limit and the instruction hook that raises when its [`Guard`] says stop.
/// [`crate::lua::new_runtime`] does this for every baton state; the fleet file's plain state gets it too.
pub fn install_guard(lua: &Lua, memory: u64) -> mlua::Result<()> {
    set_memory_limit(lua, memory)?;
    let guard = Rc::new(Guard::default());
    lua.set_app_data(guard.clone());
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(CHECK_EVERY),
        move |_, _| guard.check().map(|()| VmState::Continue),
    )
}

/// Changes the memory limit of `lua` (bytes; allocations past it raise `not enough memory` in Lua).
pub fn set_memory_limit(lua: &Lua, bytes: u64) -> mlua::Result<()> {
    lua.set_memory_limit(usize::try_from(bytes).unwrap_or(usize::MAX))
        .map(drop)
}

fn guard(lua: &Lua) -> Option<Rc<Guard>> {
    lua.app_data_ref::<Rc<Guard>>().map(|g| g.clone())
}

/// What the guard of `lua` says now: an error when its interrupt is set or a bound has passed. For hooks of
/// their own (a served MCP call's coroutine), which replace the state's hook on their thread.
pub fn check(lua: &Lua) -> mlua::Result<()> {
    match guard(lua) {
        Some(g) => g.check(),
        None => Ok(()),
    }
}

/// The interrupt of `lua` (to trigger it from another thread). A state without a guard gets a fresh one
/// that nothing checks.
pub fn interrupt(lua: &Lua) -> Interrupt {
    guard(lua)
        .map(|g| g.interrupt.borrow().clone())
        .unwrap_or_default()
}

/// Makes `lua` stop when `interrupt` is triggered (one created before the state, such as a daemon run's).
pub fn share_interrupt(lua: &Lua, interrupt: Interrupt) {
    if let Some(g) = guard(lua) {
        *g.interrupt.borrow_mut() = interrupt;
    }
}

/// Any Lua still running in `lua` `after` from now raises `msg`; `None` removes the deadline.
pub fn set_deadline(lua: &Lua, after: Option<Duration>, msg: &str) {
    if let Some(g) = guard(lua) {
        lock(&g.bounds).deadline = after.map(|a| (Instant::now() + a, msg.to_string()));
    }
}

/// Polls `fut` with a deadline the instruction hook enforces while `fut`'s Lua runs: a Lua loop that never
/// waits (so the timer around it never gets a turn) raises `msg` once `deadline` passes. Used by
/// `baton.timeout`.
pub fn with_deadline<F: Future>(
    lua: &Lua,
    deadline: Instant,
    msg: String,
    fut: F,
) -> impl Future<Output = F::Output> {
    Scoped {
        guard: guard(lua),
        deadline,
        msg,
        fut: Box::pin(fut),
    }
}

struct Scoped<F> {
    guard: Option<Rc<Guard>>,
    deadline: Instant,
    msg: String,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(guard) = self.guard.clone() else {
            return self.fut.as_mut().poll(cx);
        };
        lock(&guard.bounds)
            .scopes
            .push((self.deadline, self.msg.clone()));
        let r = self.fut.as_mut().poll(cx);
        lock(&guard.bounds).scopes.pop();
        r
    }
}

/// How long past a bound the [`watchdog`] lets the Lua go on before it ends the process.
pub const GRACE: Duration = Duration::from_secs(1);

/// The exit code of a process the [`watchdog`] ends (the one `timeout(1)` uses).
pub const STUCK_EXIT: i32 = 124;

/// The exit code of a process ended by a second Ctrl-C (128 + SIGINT, as a shell reports it).
pub const SIGINT_EXIT: i32 = 130;

/// Watches the bounds of `lua` from a thread of its own (for `baton run` and the other commands that drive
/// one state to its end): when a deadline has passed by [`GRACE`] and the work under it is still being
/// polled, the hook cannot reach what runs (C code such as a backtracking `string.find`, or Lua that
/// catches every error in a loop), so the process ends with the bound's message and exit code
/// [`STUCK_EXIT`]: nobody waits past a bound. Whatever it held goes with the process (SQLite locks are
/// released by the kernel; an open transaction is rolled back on the next open). Stops with the state.
pub fn watchdog(lua: &Lua) {
    let Some(g) = guard(lua) else {
        return;
    };
    let bounds = Arc::downgrade(&g.bounds);
    let _ = std::thread::Builder::new()
        .name("baton watchdog".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let Some(bounds) = bounds.upgrade() else {
                    return;
                };
                let Some(now) = Instant::now().checked_sub(GRACE) else {
                    continue;
                };
                let passed = lock(&bounds).passed(now);
                if let Some((_, msg)) = passed {
                    crate::errln!(
                        "baton: {msg}, and the script did not stop within {} after that (it is stuck in \
                         code the time limit cannot interrupt, such as a string.find that backtracks); \
                         exiting with code {STUCK_EXIT}",
                        crate::core::duration::format(GRACE)
                    );
                    std::process::exit(STUCK_EXIT);
                }
            }
        });
}

/// Triggers `interrupt` with `interrupted` on each SIGINT (Ctrl-C), from a thread of its own, so the signal
/// is seen even while Lua spins on the runtime's thread. The first Ctrl-C says on stderr that the work is
/// being interrupted; one that comes while that interrupt is still pending (the work did not stop: C code
/// that no hook reaches) ends the process at once with exit code [`SIGINT_EXIT`]. The watcher lives as long
/// as the process. Returns once the handler is installed (a line editor started later saves and restores
/// it, not the default).
pub fn interrupt_on_sigint(interrupt: Interrupt) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("baton sigint".into())
        .spawn(move || {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(mut sigint) = signal(SignalKind::interrupt()) else {
                    return;
                };
                let _ = ready_tx.send(());
                while sigint.recv().await.is_some() {
                    if interrupt.is_set() {
                        crate::errln!("baton: interrupted again: exiting now");
                        std::process::exit(SIGINT_EXIT);
                    }
                    interrupt.trigger("interrupted");
                    crate::errln!("interrupting… press Ctrl-C again to exit now");
                }
            });
        });
    if spawned.is_ok() {
        let _ = ready_rx.recv_timeout(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guarded() -> Lua {
        let lua = Lua::new();
        install_guard(&lua, 64 << 20).unwrap();
        lua
    }

    #[test]
    fn an_interrupt_stops_a_loop_also_inside_a_c_called_callback() {
        let lua = guarded();
        let interrupt = interrupt(&lua);
        let trigger = interrupt.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            trigger.trigger("interrupted");
        });
        let e = lua
            .load("table.sort({3, 2, 1, 5, 4}, function() while true do end end)")
            .exec()
            .unwrap_err();
        t.join().unwrap();
        assert!(e.to_string().contains("interrupted"), "{e}");
        // Until cleared, every Lua that runs stops; afterwards all is well.
        assert!(lua.load("for i = 1, 1e6 do end").exec().is_err());
        interrupt.clear();
        lua.load("for i = 1, 1e6 do end").exec().unwrap();
    }

    #[test]
    fn a_deadline_stops_a_loop_and_can_be_removed() {
        let lua = guarded();
        set_deadline(
            &lua,
            Some(Duration::from_millis(50)),
            "f.lua: did not finish within 50ms",
        );
        let e = lua.load("while true do end").exec().unwrap_err();
        assert!(e.to_string().contains("did not finish within 50ms"), "{e}");
        set_deadline(&lua, None, "");
        lua.load("for i = 1, 1e6 do end").exec().unwrap();
    }

    #[test]
    fn the_memory_limit_raises_not_enough_memory() {
        let lua = guarded();
        let e = lua
            .load("local t, s = {}, 'x' while true do s = s .. 'y' t[#t + 1] = s end")
            .exec()
            .unwrap_err();
        assert!(e.to_string().contains("not enough memory"), "{e}");
        // The state is still usable after the failed allocation.
        lua.load("collectgarbage() local t = {1, 2, 3}")
            .exec()
            .unwrap();
    }
}
