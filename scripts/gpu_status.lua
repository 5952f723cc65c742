-- gpu_status.lua — GPU memory and load across the fleet, in one table.
--
-- On each host (concurrently): where `nvidia-smi` is on the PATH, its CSV queries parsed into GPU, memory
-- used/total, utilisation and the processes on each GPU; on macOS (Apple silicon) the unified memory from
-- `sysctl`/`vm_stat`; otherwise "no GPU". Hosts that do not answer are listed as offline.
--
-- Fleet: any hosts; by default every fleet host with role "gpu" or "inference", else every fleet host.
--
-- Arguments: [HOST…] the hosts to ask · --json print the result as JSON (a list of
--   {host, kind = "nvidia"|"apple"|"none"|"offline"|"error", gpus = {…}, err})
local args = require("baton.args")
local gpu = require("baton.gpu")
local routines = require("baton.routines")

local a = args.parse(baton.args, { flags = { "json" }, usage = "gpu_status.lua [HOST…] [--json]" })

local hosts = {}
for _, h in ipairs(a) do hosts[#hosts + 1] = routines.host(nil, h) end
if #hosts == 0 then
  for _, role in ipairs({ "gpu", "inference" }) do
    for _, h in ipairs(routines.with_role(role)) do hosts[#hosts + 1] = h end
  end
  table.sort(hosts)
end
if #hosts == 0 then
  for h in pairs(baton.fleet.hosts) do hosts[#hosts + 1] = h end
  table.sort(hosts)
end

local PROBE = [[if command -v nvidia-smi >/dev/null 2>&1; then echo nvidia; elif [ "$(uname -s)" = Darwin ]; then echo apple; else echo none; fi]]

local function status(host)
  -- `gpus` is a list even when empty (`--json` writes `[]`, not `{}`).
  if not ssh.online(host, { timeout = "5s" }) then return { host = host, kind = "offline", gpus = baton.json.array() } end
  local kind = ssh.run(host, PROBE, { timeout = "30s" }).stdout:match("%a+")
  local gpus, err = baton.json.array(), nil
  if kind == "nvidia" then
    local list = ssh.run(host, gpu.NVIDIA_GPUS, { timeout = "30s" }).stdout
    local apps = ssh.run(host, gpu.NVIDIA_APPS, { timeout = "30s", check = false }).stdout
    gpus = gpu.parse_nvidia(list, apps)
  elseif kind == "apple" then
    gpus, err = gpu.parse_apple(ssh.run(host, gpu.APPLE, { timeout = "30s" }).stdout)
    if not gpus then kind, gpus = "error", baton.json.array() end
  end
  return { host = host, kind = kind, gpus = gpus, err = err }
end

local results = ssh.each(hosts, function(host)
  local ok, r = pcall(status, host)
  return ok and r or { host = host, kind = "error", gpus = baton.json.array(), err = tostring(r) }
end)

if a.json then
  print(baton.json.encode(baton.json.array(results)))
  return
end

local rows = { { "HOST", "GPU", "MEMORY (MiB)", "UTIL", "PROCESSES" } }
local function mem(g)
  return ("%s / %s%s"):format(g.memory_used_mb or "?", g.memory_total_mb or "?", g.unified and " unified" or "")
end
for _, r in ipairs(results) do
  if #r.gpus == 0 then
    local why = ({ offline = "offline", none = "no GPU (no nvidia-smi, not macOS)" })[r.kind] or ("error: " .. tostring(r.err))
    rows[#rows + 1] = { r.host, why, "", "", "" }
  end
  for _, g in ipairs(r.gpus) do
    local procs = {}
    for _, p in ipairs(g.processes) do procs[#procs + 1] = ("%s[%s] %s MiB"):format(p.name, p.pid, p.memory_mb) end
    rows[#rows + 1] = { r.host, ("%s: %s"):format(g.index, g.name), mem(g),
      g.utilization and (g.utilization .. "%") or "-", #procs > 0 and table.concat(procs, ", ") or "-" }
  end
end
local widths = {}
for _, row in ipairs(rows) do
  for i, cell in ipairs(row) do widths[i] = math.max(widths[i] or 0, #cell) end
end
for _, row in ipairs(rows) do
  local cells = {}
  for i, cell in ipairs(row) do cells[i] = cell .. (" "):rep(widths[i] - #cell) end
  print((table.concat(cells, "  "):gsub("%s+$", "")))
end
