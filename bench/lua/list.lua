-- GET /item?category=X&per_page=20, X drawn at random (args: comma-separated categories).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

local categories = {}

function init(args)
  for c in string.gmatch(args[1], "[^,]+") do categories[#categories + 1] = c end
  math.randomseed(os.time())
end

function request()
  local c = categories[math.random(#categories)]
  return wrk.format("GET", "/item?category=" .. c .. "&per_page=20")
end
