--- GPU and memory facts from command output: `nvidia-smi` CSV on CUDA machines, `vm_stat`/`sysctl` on
--- Apple silicon (unified memory). Pure parsing; `scripts/gpu_status.lua` runs the commands over ssh.
local M = {}

--- The nvidia-smi query whose output `parse_nvidia` reads.
M.NVIDIA_GPUS = "nvidia-smi --query-gpu=index,uuid,name,memory.used,memory.total,utilization.gpu --format=csv,noheader,nounits"
--- The nvidia-smi query whose output `parse_nvidia_apps` reads.
M.NVIDIA_APPS = "nvidia-smi --query-compute-apps=gpu_uuid,pid,process_name,used_memory --format=csv,noheader,nounits"
--- The commands whose output `parse_apple` reads, separated by a marker line.
M.APPLE = "sysctl -n hw.memsize; sysctl -n machdep.cpu.brand_string; echo ---; vm_stat"

local function split_csv(line)
  local fields = {}
  for field in (line .. ","):gmatch("%s*(.-)%s*,") do fields[#fields + 1] = field end
  return fields
end

local function num(s)
  return tonumber(s) -- "[N/A]" and friends become nil
end

--- `{ {index, uuid, name, memory_used_mb, memory_total_mb, utilization, processes = {}} … }`.
---@param gpus_csv string output of `M.NVIDIA_GPUS`
---@param apps_csv string? output of `M.NVIDIA_APPS`
---@return {index: integer, uuid: string, name: string, memory_used_mb: number?, memory_total_mb: number?, utilization: number?, processes: {pid: integer, name: string, memory_mb: number?}[]}[]
function M.parse_nvidia(gpus_csv, apps_csv)
  local gpus, by_uuid = baton.json.array(), {}
  for line in gpus_csv:gmatch("[^\r\n]+") do
    local f = split_csv(line)
    if #f >= 6 then
      local gpu = {
        index = num(f[1]), uuid = f[2], name = f[3],
        memory_used_mb = num(f[4]), memory_total_mb = num(f[5]), utilization = num(f[6]),
        processes = baton.json.array(),
      }
      gpus[#gpus + 1] = gpu
      by_uuid[gpu.uuid] = gpu
    end
  end
  for line in (apps_csv or ""):gmatch("[^\r\n]+") do
    local f = split_csv(line)
    local gpu = by_uuid[f[1]]
    if gpu and #f >= 4 then
      gpu.processes[#gpu.processes + 1] = { pid = num(f[2]), name = f[3], memory_mb = num(f[4]) }
    end
  end
  return gpus
end

--- `{ {name, unified = true, memory_total_mb, memory_used_mb, utilization = nil, processes = {}} }` from the
--- output of `M.APPLE`. Used = active + wired + compressed pages.
---@param text string output of `M.APPLE`
---@return {index: integer, name: string, unified: true, memory_total_mb: integer, memory_used_mb: integer, processes: table}[]? gpus
---@return string? err why the output could not be read
function M.parse_apple(text)
  local head, vm = text:match("^(.-)\n%-%-%-\n(.*)$")
  if not head then return nil, "unexpected output: " .. text:sub(1, 200) end
  local total_bytes = num(head:match("^%s*(%d+)"))
  local chip = head:match("\n([^\n]+)") or "Apple silicon"
  local page = num(vm:match("page size of (%d+) bytes")) or 4096
  local function pages(label)
    return num(vm:match(label .. ":%s+(%d+)")) or 0
  end
  local used = (pages("Pages active") + pages("Pages wired down") + pages("Pages occupied by compressor")) * page
  if not total_bytes then return nil, "no hw.memsize in output" end
  return baton.json.array({
    { index = 0, name = chip, unified = true,
      memory_total_mb = math.floor(total_bytes / 1048576), memory_used_mb = math.floor(used / 1048576),
      processes = baton.json.array() },
  })
end

return M
