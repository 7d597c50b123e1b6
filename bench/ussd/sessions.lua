-- Full USSD sessions over the cumulative contract, one connection per wrk thread so the
-- hops of a session go out in order. Journeys mix dossier lookups, catalogue browsing and
-- registration (up to the code sent by SMS).
-- Arguments (after --): dossier codes to look up, then "tail:" digit tails.

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  codes, tails, run = {}, {}, "r"
  for _, a in ipairs(args) do
    if a:sub(1, 5) == "tail:" then table.insert(tails, a:sub(6))
    elseif a:sub(1, 4) == "run:" then run = a:sub(5)
    else table.insert(codes, a) end
  end
  journeys = {}
  for i, code in ipairs(codes) do
    table.insert(journeys, {"", "1", "1*" .. code, "1*" .. code .. "*9", "1*" .. code .. "*9*00",
                            "1*" .. code .. "*9*00*0"})
  end
  for i, tail in ipairs(tails) do
    table.insert(journeys, {"", "1", "1*" .. tail, "1*" .. tail .. "*00", "1*" .. tail .. "*00*0"})
  end
  table.insert(journeys, {"", "4", "4*9", "4*9*1", "4*9*1*9", "4*9*1*9*0", "4*9*1*9*0*8", "4*9*1*9*0*8*00",
                          "4*9*1*9*0*8*00*0"})
  table.insert(journeys, {"", "5", "5*00", "5*00*6", "5*00*6*9", "5*00*6*9*00", "5*00*6*9*00*0"})
  -- Registration up to its code: consent, ID number, name, date of birth (the hop that
  -- writes the code and its SMS), a wrong code (a checked attempt), main menu, goodbye.
  -- (Not named "id": that is the thread's number, which spreads the threads over journeys.)
  local id_number, name, birth = "030090001234", "Nguyen Van An", "15031990"
  local reg = "2*1*" .. id_number .. "*" .. name .. "*" .. birth
  table.insert(journeys, {"", "2", "2*1", "2*1*" .. id_number, "2*1*" .. id_number .. "*" .. name, reg,
                          reg .. "*000000", reg .. "*000000*00", reg .. "*000000*00*0"})
  journey, hop, session = (id % #journeys) + 1, 1, 0
  headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
end

local function urlencode(s)
  return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function request()
  local steps = journeys[journey]
  if hop > #steps then
    journey = (journey % #journeys) + 1
    hop = 1
  end
  if hop == 1 then session = session + 1 end
  local text = journeys[journey][hop]
  hop = hop + 1
  -- Every session its own id (unique per run) and caller, as on a real network.
  local body = "sessionId=bench-" .. run .. "-" .. id .. "-" .. session .. "&serviceCode=%2A384%23"
    .. "&phoneNumber=%2B8498" .. string.format("%07d", (id * 100003 + session) % 10000000)
    .. "&networkCode=45204&text=" .. urlencode(text)
  return wrk.format("POST", "/ussd/at", headers, body)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.3f %.3f %.3f\n",
    summary.requests, summary.duration, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000))
end
