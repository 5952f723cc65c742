-- An example fleet file: copy it to ~/.config/baton/fleet.lua (or pass --fleet / set $BATON_FLEET) and
-- adapt the names. `baton fleet` shows what baton reads from it; a typo is reported with its path
-- (`hosts.engine.olama: unknown key, did you mean ollama?`).
return {
  -- Optional: an OpenSSH config file handed to every connection (-F). Relative to this file.
  -- ssh_config = "ssh_config",

  hosts = {
    -- The laptop you work on. `ssh = false` runs commands right here, so a playbook works from any machine.
    -- `claude = true`: Claude Code is installed here for `claude.run` (`baton doctor` checks its version).
    workstation = { ssh = false, role = "workstation", tags = { "laptop" }, claude = true },

    -- The always-on home server: CI, Docker, Syncthing, a small GPU. `ssh` is any OpenSSH destination;
    -- it defaults to the host's name, so a `Host brain` entry in ~/.ssh/config just works.
    -- It is also the Syncthing hub: `sync.syncthing("brain")` reads the GUI address and API key from its
    -- config.xml over ssh (or give them: `syncthing = { url = "http://brain:8384", api_key_env = "ST_KEY" }`).
    brain = { ssh = "brain", role = "server", tags = { "ci", "docker" }, syncthing = {} },

    -- The gaming PC with the big GPU sleeps between sessions. `mac` lets `ssh.wake("gpu")` and
    -- `ssh.wait_online("gpu", {wake = true})` wake it; the packet is sent from the always-on server (`via`),
    -- so waking works from outside the LAN too.
    -- gpu = {
    --   ssh = "me@gpu.local",
    --   role = "gpu",
    --   mac = "a8:a1:59:12:34:56",
    --   wake = { broadcast = "192.168.1.255", port = 9, via = "brain" },
    -- },

    -- The headless Mac Studio running Ollama with two 32B models loaded. `ollama_parallel` matches the
    -- server's OLLAMA_NUM_PARALLEL: baton queues extra requests instead of overloading it.
    engine = {
      ssh = "me@engine.local",
      role = "inference",
      tags = { "mac" },
      ollama = "http://engine.local:11434",
      ollama_parallel = 4,
      -- A host you reach for the first time can record its key on first contact (default: "strict").
      known_hosts = "accept-new",
    },
  },

  -- Ordered, lowest (cheapest) first. Prices are USD per million tokens.
  tiers = {
    { name = "local", provider = "ollama", host = "engine",
      models = { code = "qwen2.5-coder:32b", reason = "deepseek-r1:32b" } },
    { name = "cheap", provider = "openrouter", model = "anthropic/claude-sonnet-4.5", price = { input = 3, output = 15 } },
    { name = "premium", provider = "openrouter", model = "anthropic/claude-opus-4.6", price = { input = 15, output = 75 } },
  },

  -- Which tier (and which of its models) a kind of task starts at. Kinds not listed start at the lowest
  -- tier that is up. Leave `tasks` out to get the default table (`baton fleet` prints it).
  -- `prompt` is the instruction `baton ask TASK` puts before your text (each known kind has a default;
  -- `baton -v ask …` shows the one used; `prompt = ""` sends your text alone).
  tasks = {
    code_generation = { tier = "local", model = "code" },
    commit_message = { tier = "local", model = "code",
      prompt = "Write a one-line conventional commit message (feat:, fix:, docs:…) for the diff below." },
    bug_hunting = { tier = "local", model = "reason" },
    gap_analysis = { tier = "cheap" },
    code_review = { tier = "cheap" },
    architecture = { tier = "premium" },
  },

  -- The key itself stays in the environment; only the variable's name is here.
  openrouter = { key_env = "OPENROUTER_API_KEY" },

  -- Where `baton.notify`, failing scheduled jobs and `ssh.spawn(…, {notify = true})` jobs report (any subset).
  -- Tokens stay in the environment; webhook header values are never printed.
  notify = {
    ntfy = { url = "https://ntfy.sh", topic = "baton-me-7f3a", token_env = "NTFY_TOKEN" },
    desktop = true,
    -- webhook = { url = "https://hooks.example.com/baton", headers = { Authorization = "Bearer …" } },
    -- command = { "/usr/local/bin/my-notifier" },  -- gets the title and body as its last two arguments
  },

  -- Paid calls reserve their worst case before they are sent, so spend never passes this.
  budget = { monthly_usd = 100, alert_at = 0.8 },

  -- The dashboard's token (`baton web`, `baton daemon --web`), from the environment; without it each start
  -- makes a random one, and the page cannot listen beyond loopback.
  web = { token_env = "BATON_WEB_TOKEN" },
}
