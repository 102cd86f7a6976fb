-- GET /item?category=X&per_page=20, X drawn at random (args: comma-separated categories).
-- The requests are formatted once, in init() (see get_by_id.lua).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

local requests = {}

function init(args)
  for c in string.gmatch(args[1], "[^,]+") do
    requests[#requests + 1] = wrk.format("GET", "/item?category=" .. c .. "&per_page=20")
  end
  math.randomseed(os.time())
end

function request()
  return requests[math.random(#requests)]
end
