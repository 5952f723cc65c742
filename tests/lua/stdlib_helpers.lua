-- The pure-Lua stdlib helpers used by the playbooks.
local t = require("baton.test")
local args = require("baton.args")
local gpu = require("baton.gpu")

t.it("args: flags, options with values, positionals, --", function()
  local a = args.parse({ "brain", "--wait", "python", "--sync-back", "out", "./results", "--job", "j1", "--", "--not-a-flag" },
    { flags = { "wait" }, options = { job = 1, ["sync-back"] = 2 } })
  t.eq(a[1], "brain") t.eq(a[2], "python") t.eq(a[3], "--not-a-flag")
  t.eq(a.wait, true) t.eq(a.job, "j1") t.eq(a.sync_back[1], "out") t.eq(a.sync_back[2], "./results")
  t.raises("unknown option --wiat", args.parse, { "--wiat" }, { flags = { "wait" }, usage = "x HOST" })
  t.raises("--job needs 1 value", args.parse, { "--job" }, { options = { job = 1 } })
end)

t.it("gpu: nvidia-smi CSV with processes", function()
  local gpus = gpu.parse_nvidia(
    "0, GPU-aaa, NVIDIA GeForce RTX 4090, 10240, 24564, 87\n1, GPU-bbb, NVIDIA GeForce RTX 3060, [N/A], 12288, 0\n",
    "GPU-aaa, 4242, python3, 10000\n")
  t.eq(#gpus, 2)
  t.eq(gpus[1].name, "NVIDIA GeForce RTX 4090") t.eq(gpus[1].memory_used_mb, 10240) t.eq(gpus[1].memory_total_mb, 24564)
  t.eq(gpus[1].utilization, 87) t.eq(gpus[1].processes[1].pid, 4242) t.eq(gpus[1].processes[1].name, "python3")
  t.eq(gpus[2].memory_used_mb, nil) t.eq(#gpus[2].processes, 0)
end)

t.it("gpu: Apple unified memory from sysctl and vm_stat", function()
  local out = "137438953472\nApple M2 Ultra\n---\nMach Virtual Memory Statistics: (page size of 16384 bytes)\n" ..
    "Pages free:                               100000.\nPages active:                            2000000.\n" ..
    "Pages wired down:                         500000.\nPages occupied by compressor:             100000.\n"
  local gpus = gpu.parse_apple(out)
  t.eq(gpus[1].unified, true) t.eq(gpus[1].name, "Apple M2 Ultra")
  t.eq(gpus[1].memory_total_mb, 131072)
  t.eq(gpus[1].memory_used_mb, math.floor(2600000 * 16384 / 1048576))
  local none, err = gpu.parse_apple("garbage")
  t.eq(none, nil) t.truthy(err:find("unexpected output", 1, true))
end)

t.done()
