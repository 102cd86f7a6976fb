-- GET /item/{id} with ids drawn at random from the loaded set (args: the ids file).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

local ids = {}

function init(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  math.randomseed(os.time())
end

function request()
  return wrk.format("GET", "/item/" .. ids[math.random(#ids)])
end
