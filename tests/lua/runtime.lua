-- The runtime's promises: concurrency, task errors, cancellation, live output.
local t = require("baton.test")

t.it("gather runs two waiting functions at the same time", function()
  local marks = {}
  local function sleeper(name)
    return function()
      marks[name .. "_start"] = baton.clock()
      -- Each waits until both have started (gives up after ~10 s): run one after the other, they could not
      -- overlap.
      for _ = 1, 1000 do if marks.a_start and marks.b_start then break end baton.sleep(0.01) end
      marks[name .. "_end"] = baton.clock()
      return name
    end
  end
  local r = baton.gather({ sleeper("a"), sleeper("b") })
  t.eq(r[1], "a") t.eq(r[2], "b") t.eq(r.n, 2)
  -- Overlap: each started before the other finished.
  t.truthy(marks.b_start < marks.a_end, "b started before a ended")
  t.truthy(marks.a_start < marks.b_end, "a started before b ended")
end)

t.it("gather limit = 1 runs one at a time, in order", function()
  local marks = {}
  local fns = {}
  for i = 1, 3 do
    fns[i] = function() marks[#marks + 1] = "start" .. i baton.sleep(0.02) marks[#marks + 1] = "end" .. i return i * 10 end
  end
  local r = baton.gather(fns, { limit = 1 })
  t.eq(table.concat(marks, ","), "start1,end1,start2,end2,start3,end3")
  t.eq(r[3], 30)
end)

t.it("gather accepts tasks and check = false reports each outcome", function()
  local task = baton.spawn(function() baton.sleep(0.01) return "from task" end)
  local r = baton.gather({ task, function() error("boom") end }, { check = false })
  t.eq(r[1].ok, true) t.eq(r[1].value, "from task")
  t.eq(r[2].ok, false) t.truthy(r[2].err:find("boom", 1, true), "error text kept")
  t.raises("baton.gather: entry 2 failed", baton.gather, { function() end, function() error("bad") end })
  t.raises("options.limt: unknown key, did you mean limit?", baton.gather, {}, { limt = 2 })
end)

t.it("a spawned task's error is re-raised by wait, and tasks report their state", function()
  local task = baton.spawn(function() baton.sleep(0.01) error("inside the task") end)
  t.truthy(tostring(task):find("running", 1, true), "running while it sleeps")
  local err = t.raises("inside the task", task.wait, task)
  t.truthy(tostring(task):find("failed", 1, true), tostring(task))
  -- wait again gives the same outcome
  t.raises("inside the task", task.wait, task)
  local ok_task = baton.spawn(function(a, b) return a + b, "second" end, 2, 3)
  local sum, second = ok_task:wait()
  t.eq(sum, 5) t.eq(second, "second")
end)

t.it("cancel stops a task at its next wait", function()
  local reached = false
  local task = baton.spawn(function() baton.sleep(5) reached = true end)
  baton.sleep(0.01)
  task:cancel()
  t.raises("cancelled", task.wait, task)
  t.eq(reached, false)
  t.eq(task:status(), "cancelled")
end)

t.it("timeout raises and kills a running baton.exec", function()
  local pidfile = os.tmpname()
  local started = baton.clock()
  local err = t.raises("timed out after 300ms", baton.timeout, 0.3, function()
    baton.exec("sleep 30 & echo $! > " .. pidfile .. "; wait")
  end)
  t.truthy(baton.clock() - started < 5, "returned at the timeout, not after the sleep")
  local pid = io.open(pidfile):read("l")
  os.remove(pidfile)
  -- Gone, or a zombie waiting to be reaped (a container's init may never reap it): not running either way.
  local alive = "[ -d /proc/$1 ] && ! grep -q '^State:[[:space:]]*Z' /proc/$1/status"
  local probe
  for _ = 1, 50 do
    probe = baton.exec({ "sh", "-c", alive, "_", pid }, { check = false })
    if not probe.ok then break end
    baton.sleep(0.02)
  end
  t.eq(probe.ok, false, "the sleep (pid " .. pid .. ") was killed")
end)

t.it("exec timeout gives code 124 and keeps earlier output", function()
  local r = baton.exec("echo before; sleep 10", { timeout = "200ms", check = false })
  t.eq(r.code, 124) t.eq(r.ok, false) t.eq(r.stdout, "before\n")
  t.raises("baton.exec: timed out after 200ms", baton.exec, "sleep 10", { timeout = 0.2 })
end)

t.it("on_line sees lines live and in order", function()
  local seen = {}
  -- Two pipes have no common order for lines written at the same instant. The command waits for a file
  -- that on_line creates on out3, then on err1: a defined order, and proof the lines came while it ran.
  local dir = os.tmpname()
  os.remove(dir)
  local function gate(name)
    return "n=0; until [ -e " .. dir .. name .. " ] || [ $n -ge 1500 ]; do sleep 0.02; n=$((n+1)); done"
  end
  local r = baton.exec("for i in 1 2 3; do echo out$i; done; " .. gate("out3") .. "; echo err1 >&2; "
    .. gate("err1") .. "; echo last", {
    on_line = function(stream, line)
      seen[#seen + 1] = { stream = stream, line = line }
      io.open(dir .. line, "w"):close()
    end,
  })
  for _, name in ipairs({ "out1", "out2", "out3", "err1", "last" }) do os.remove(dir .. name) end
  local lines = {}
  for i, s in ipairs(seen) do lines[i] = s.stream .. ":" .. s.line end
  t.eq(table.concat(lines, " "), "stdout:out1 stdout:out2 stdout:out3 stderr:err1 stdout:last")
  t.eq(r.stdout, "out1\nout2\nout3\nlast\n")
end)

t.it("exec options: argv, cwd, env, stdin, and clear misuse errors", function()
  local r = baton.exec({ "sh", "-c", 'printf "%s|%s|%s" "$1" "$FOO" "$(pwd)"', "_", "a b; $(x)" }, { env = { FOO = "bar" }, cwd = "/" })
  t.eq(r.stdout, "a b; $(x)|bar|/")
  t.eq(baton.exec("cat", { stdin = "fed in" }).stdout, "fed in")
  t.raises("baton.exec: argument 1 (cmd) must be a string or a list of strings, got nil", baton.exec, nil)
  t.raises("baton.exec: options.tmeout: unknown key, did you mean timeout?", baton.exec, "true", { tmeout = 1 })
  t.raises("baton.exec: exit 3: oops", baton.exec, "echo oops >&2; exit 3")
  t.raises("baton.sleep: argument 1 (dur) must be a duration", baton.sleep, "soon")
  t.raises("cannot start /no/such/program", baton.exec, { "/no/such/program" })
end)

t.it("durations, env, json and the read-only fleet", function()
  local before = baton.clock()
  baton.sleep("50ms")
  t.truthy(baton.clock() - before >= 0.04, "slept at least 40 ms")
  t.eq(baton.env("BATON_SURELY_UNSET", "fallback"), "fallback")
  t.eq(baton.json.decode(baton.json.encode({ a = { 1, 2 } })).a[2], 2)
  t.raises("not valid JSON", baton.json.decode, "{")
  -- baton.fleet is built on first use: writing and iterating before any read behave like the view.
  t.raises("baton.fleet is read-only", function() baton.fleet.hosts = {} end)
  local keys = {}
  for k in pairs(baton.fleet) do keys[#keys + 1] = k end
  t.truthy(#keys >= 3, "pairs(baton.fleet) lists hosts, tiers, tasks…")
  t.eq(baton.fleet.hosts["local"].ollama, "http://127.0.0.1:11434")
  t.raises("read-only", function() baton.fleet.hosts = {} end)
  t.raises("read-only", function() baton.fleet.hosts["local"].ollama = "x" end)
end)

t.it("module globals are built on first use and behave like plain globals", function()
  t.eq(rawget(sync, "push"), nil, "not built before use")
  t.eq(type(sync.push), "function")
  t.eq(type(rawget(sync, "push")), "function", "built after first use")
  t.eq(surely_undefined_global, nil)
  for _, name in ipairs({ "ollama", "openrouter", "route", "ssh", "schedule" }) do
    t.eq(type(_G[name]), "table", name)
  end
end)

t.it("a module global replaced before its first use stays replaced", function()
  local real = route
  route = { wrapped = true }
  t.eq(type(real.pick), "function", "the module fills in place")
  t.eq(route.wrapped, true, "the script's own global is kept")
  route = real
end)

t.it("module globals are modules too, and survive a strict _G", function()
  t.eq(require("ssh"), ssh)
  t.eq(require("route"), route)
  t.eq(require("baton"), baton)
  t.eq(type(require("openrouter").chat), "function")
  -- Strict mode: reading an undefined global raises. The API globals are still there.
  local saved = getmetatable(_G)
  setmetatable(_G, {
    __index = function(_, k) error("undefined global " .. tostring(k), 2) end,
    __newindex = function(_, k) error("new global " .. tostring(k), 2) end,
  })
  local ok, err = pcall(function()
    t.eq(type(schedule.cron), "function")
    t.eq(type(ollama.chat), "function")
    local n = 0
    for _ in pairs(ssh) do n = n + 1 end
    t.truthy(n > 3, "pairs over a module global fills it")
  end)
  local strict_err = select(2, pcall(function() return surely_undefined_global end))
  setmetatable(_G, saved)
  t.truthy(ok, tostring(err))
  t.truthy(tostring(strict_err):find("undefined global", 1, true), tostring(strict_err))
end)

-- Hardening (issue 15): loops that never wait, self-waits, user coroutines, deep tables, bad arguments.

t.it("baton.timeout stops a loop that never waits, also inside a C-called callback", function()
  t.raises("timed out after 200ms", baton.timeout, 0.2, function() while true do end end)
  t.raises("timed out after 200ms", baton.timeout, 0.2, function()
    table.sort({ 3, 2, 1, 5, 4 }, function() while true do end end)
  end)
  t.raises("timed out after 200ms", baton.timeout, 0.2, function()
    string.gsub("abc", "%w", function() while true do end end)
  end)
  -- The outer deadline stops an inner loop even when the inner timeout is longer.
  t.raises("timed out after 200ms", baton.timeout, 0.2, function()
    return baton.timeout(60, function() while true do end end)
  end)
  -- Work that finishes in time is untouched.
  t.eq(baton.timeout(5, function() local n = 0 for i = 1, 1e5 do n = n + i end return n end), 5000050000)
end)

t.it("a task that waits on itself raises instead of hanging", function()
  local task
  task = baton.spawn(function() baton.sleep(0) return task:wait() end)
  t.raises("task waits on itself", task.wait, task)
end)

t.it("baton calls that wait work inside user coroutines", function()
  local out = coroutine.wrap(function() return baton.exec("echo hi").stdout end)()
  t.eq(out, "hi\n")
  local co = coroutine.create(function(a)
    local b = coroutine.yield(a + 1)
    baton.sleep(0.01)
    return b, baton.exec({ "echo", "there" }).stdout
  end)
  local ok, v = coroutine.resume(co, 1)
  t.eq(ok, true) t.eq(v, 2)
  local ok2, b, text = coroutine.resume(co, 10)
  t.eq(ok2, true) t.eq(b, 10) t.eq(text, "there\n")
  t.eq(coroutine.status(co), "dead")
  local gen = coroutine.wrap(function() for i = 1, 3 do baton.sleep(0) coroutine.yield(i) end end)
  t.eq(gen() + gen() + gen(), 6, "a generator that waits between values")
  t.raises("boom", coroutine.wrap(function() error("boom") end))
  -- Where the resumer cannot yield, the call names itself and points to baton.spawn.
  t.raises("baton.sleep: cannot wait inside this coroutine", table.sort, { 3, 2, 1 }, function(a, b)
    return coroutine.wrap(function() baton.sleep(0.01) return a < b end)()
  end)
end)

t.it("deep tables give errors or {…}, not a crash", function()
  local deep = {}
  local c = deep
  for _ = 1, 30000 do c[1] = {} c = c[1] end
  local shown = baton.inspect(deep, math.maxinteger)
  t.truthy(shown:find("{…}", 1, true), "inspect stops at its bound")
  t.raises("baton.json.encode: argument 1 (value) nests tables more than 128 deep", baton.json.encode, deep)
  t.raises("baton.log.info: argument 2 (fields) nests tables more than 128 deep", baton.log.info, "m", deep)
  t.raises("baton.gather: argument 2 (options) nests tables more than 128 deep", baton.gather, {}, { x = deep })
  local self_nested = {}
  self_nested.me = self_nested
  t.raises("baton.json.encode: argument 1 (value) cannot be encoded", baton.json.encode, self_nested)
  t.eq(baton.inspect(self_nested), "{ me = <cycle> }")
  t.raises("baton.inspect: argument 2 (depth) must be a whole number of at least 0, got number -1",
    baton.inspect, {}, -1)
end)

t.it("every baton function names itself and the argument on bad input", function()
  local bad = { true, -1, 0 / 0, math.huge, "x", "\xff\xfe", {}, { 1, { 2 } }, print,
    coroutine.create(print), baton.spawn(function() end) }
  local fns = {
    ["baton.env"] = { baton.env, { "HOME", "d" } },
    ["baton.sleep"] = { baton.sleep, { 0 } },
    ["baton.spawn"] = { baton.spawn, { function() end } },
    ["baton.gather"] = { baton.gather, { {}, {} } },
    ["baton.timeout"] = { baton.timeout, { 1, function() end } },
    ["baton.exec"] = { baton.exec, { { "true" }, {} } },
    ["baton.inspect"] = { baton.inspect, { 1, 2 } },
    ["baton.log.debug"] = { baton.log.debug, { "m", {} } },
    ["baton.log.info"] = { baton.log.info, { "m", {} } },
    ["baton.log.warn"] = { baton.log.warn, { "m", {} } },
    ["baton.log.error"] = { baton.log.error, { "m", {} } },
    ["baton.json.encode"] = { baton.json.encode, { 1, {} } },
    ["baton.json.decode"] = { baton.json.decode, { "1" } },
  }
  local calls, errors = 0, 0
  for name, spec in pairs(fns) do
    for pos = 1, 3 do
      for i = 0, #bad do
        local args = { table.unpack(spec[2]) }
        args[pos] = bad[i]  -- bad[0] is nil
        calls = calls + 1
        local ok, err = pcall(spec[1], table.unpack(args, 1, 3))
        if not ok then
          errors = errors + 1
          local msg = tostring(err)
          local operational = msg:find("^baton%.exec: exit %d+")
          local names_arg = msg:find("argument " .. pos, 1, true) or msg:find(name .. ": options", 1, true)
          t.truthy(msg:find(name, 1, true) and (operational or names_arg),
            ("%s with a bad argument %d (%s) gave %q"):format(name, pos, type(bad[i]), msg))
        end
      end
    end
  end
  t.truthy(errors > 50, "most bad calls raise (" .. errors .. " of " .. calls .. ")")
end)

t.it("schedule.cron checks its target's text and its memory option", function()
  t.raises("schedule.cron: argument 3 (target) must be valid UTF-8 text, got invalid byte 0xff at 1",
    schedule.cron, "bad-target", "* * * * *", "\xff")
  t.raises('schedule.cron: options.memory: expected a size such as "512MiB" or "1GiB", got "lots"',
    schedule.cron, "bad-memory", "* * * * *", function() end, { memory = "lots" })
  t.raises("schedule.cron: options.memory: expected a size of at least 1MiB, got 10",
    schedule.cron, "tiny-memory", "* * * * *", function() end, { memory = 10 })
  t.eq(schedule.cron("fine-memory", "* * * * *", function() end, { memory = "64MiB" }).name, "fine-memory")
end)

t.it("exec waits for a background child holding its output open, not for one that let go", function()
  -- The shell exits at once; the child keeps stdout open, so its late line is part of the result.
  t.eq(baton.exec("(sleep 0.2; echo late) & echo now").stdout, "now\nlate\n")
  -- With its output redirected the child does not hold the pipes: the call returns while it still runs.
  local pid = baton.exec("sleep 30 >/dev/null 2>&1 & echo $!").stdout:gsub("%s+", "")
  t.eq(baton.exec({ "kill", "-0", pid }, { check = false }).code, 0, "the background child still runs")
  baton.exec({ "kill", pid })
end)

t.done()

t.it("an unknown host's huge or hostile name is cut short and escaped in the error", function()
  local name = string.rep("h", 1000000) .. "\27[2J"
  for _, call in ipairs({
    function() return ssh.run(name, "true") end,
    function() return sync.push("/tmp", name .. ":x") end,
  }) do
    local ok, err = pcall(call)
    t.eq(ok, false)
    err = tostring(err)
    t.truthy(#err < 2000, "error of " .. #err .. " bytes")
    t.truthy(err:find("more characters", 1, true), err:sub(1, 300))
    t.truthy(not err:find("\27", 1, true), "no raw escape character")
  end
end)
