-- GET /item/{id} with ids drawn at random from the loaded set (args: the ids file).
-- The requests are formatted once, in init(): wrk's CPU per request is its own cost, shared
-- with the server's on a small machine (bench --workers), so the script keeps it low.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

local requests = {}

function init(args)
  for line in io.lines(args[1]) do requests[#requests + 1] = wrk.format("GET", "/item/" .. line) end
  math.randomseed(os.time())
end

function request()
  return requests[math.random(#requests)]
end
