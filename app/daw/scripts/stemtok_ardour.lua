ardour {
	["type"]    = "EditorAction",
	name        = "stemtok: Separate into stems",
	license     = "MIT",
	author      = "stemtok",
	description = [[Sends audio to the running 'stemtok bridge' and places what comes back.
operation "stems": the selected regions (or the selected time range on the selected tracks, or
the selected tracks whole) become four new tracks "<region> vocals", "drums", "bass", "other",
each region at the source's position and length. operation "instrumental": each selected region
(or each region of the selected tracks) is replaced by its instrumental (karaoke).
Runs 'stemtok send' as a program: where Ardour has the preference "Sandbox all Lua scripts",
it must be off.]]
}

function action_params ()
	return {
		["operation"] = { title = "stems: four new tracks; instrumental: replace the region", default = "stems" },
		["mute"]      = { title = "Mute the source track after 'stems' (yes/no)", default = "yes" },
		["mode"]      = { title = "aligned (stems sum to the region) or generative", default = "aligned" },
		["command"]   = { title = "Command that runs stemtok", default = "stemtok" },
	}
end

-- Everything the action uses is defined inside factory(): Ardour keeps only this function.
-- Without the editor (ardour7-lua, a headless session) the parameters name what to separate:
-- "track" (a track name: its regions), "region" (a region name on that track, optional) and
-- "range" ("START-END" in samples, optional).
function factory (params) return function ()
	local p = params or {}
	local operation = p["operation"] or "stems"
	local mode = p["mode"] or "aligned"
	local command = p["command"] or "stemtok"
	local mute = (p["mute"] or "yes") == "yes"
	local gui = Editor ~= nil
	local STEMS = { "vocals", "drums", "bass", "other" }

	local function say (text, failed)
		if gui then
			local kind = failed and LuaDialog.MessageType.Error or LuaDialog.MessageType.Info
			LuaDialog.Message ("stemtok", text, kind, LuaDialog.ButtonType.Close):run ()
		end
		print ("stemtok: " .. text)
	end

	local function quote (s)
		return "'" .. string.gsub (tostring (s), "'", "'\\''") .. "'"
	end

	-- run a shell command; returns ok and its one-line verdict (stemtok's error line if any)
	local function run (cmd)
		local f = io.popen (cmd .. " 2>&1")
		local out = f:read ("a") or ""
		local ok = f:close ()
		local line = string.match (out, "stemtok: error: ([^\n]*)") or string.match (out, "stemtok bridge: ([^\n]*)")
		if not line then
			for l in string.gmatch (out, "[^\n]+") do line = l end
		end
		return ok, line or ""
	end

	local function track_of (region)
		local routes = Session:get_tracks () -- held: Lua must not collect a list while iterating
		for route in routes:iter () do
			local track = route:to_track ()
			if not track:playlist ():region_by_id (region:to_stateful ():id ()):isnil () then
				return track
			end
		end
	end

	-- a clip: the part [from, to) (samples on the timeline) of one region on its track
	local function clip (region, track, from, to)
		local rstart = region:position ():samples ()
		local rend = rstart + region:length ():samples ()
		from, to = math.max (from or rstart, rstart), math.min (to or rend, rend)
		if to <= from or region:to_audioregion ():isnil () then return nil end
		return { region = region, track = track, from = from, to = to, whole = (from == rstart and to == rend) }
	end

	local function clips_of_track (track, from, to, out)
		local regions = track:playlist ():region_list ()
		for r in regions:iter () do
			out[#out + 1] = clip (r, track, from, to)
		end
	end

	local function selected_clips ()
		local out = {}
		local sel = Editor:get_selection ()
		local regions = sel.regions:regionlist ()
		for r in regions:iter () do
			out[#out + 1] = clip (r, track_of (r))
		end
		if #out > 0 then return out end
		local from, to = sel.time:start_sample (), sel.time:end_sample ()
		if to <= from then from, to = nil, nil end
		local routes = sel.tracks:routelist ()
		for route in routes:iter () do
			local track = route:to_track ()
			if not track:isnil () then clips_of_track (track, from, to, out) end
		end
		return out
	end

	local function named_clips ()
		local out = {}
		local track = Session:route_by_name (p["track"] or ""):to_track ()
		if track:isnil () then return out end
		local from, to = string.match (p["range"] or "", "^(%d+)-(%d+)$")
		from, to = tonumber (from), tonumber (to)
		local regions = track:playlist ():region_list ()
		for r in regions:iter () do
			if not p["region"] or r:name () == p["region"] then
				out[#out + 1] = clip (r, track, from, to)
			end
		end
		return out
	end

	-- the clip's audio as a 32-bit float WAV file (what the region's sources hold, before
	-- region gain, envelope and fades)
	local function write_wav (path, c)
		local rd = c.region:to_audioregion ():to_readable ()
		local channels, frames = rd:n_channels (), c.to - c.from
		local offset = c.from - c.region:position ():samples ()
		local rate = Session:nominal_sample_rate ()
		local f = assert (io.open (path, "wb"))
		local bytes = frames * channels * 4
		f:write ("RIFF", string.pack ("<I4", 36 + bytes), "WAVE", "fmt ",
			string.pack ("<I4I2I2I4I4I2I2", 16, 3, channels, rate, rate * channels * 4, channels * 4, 32),
			"data", string.pack ("<I4", bytes))
		local block = 4096
		local bufs = {}
		for ch = 1, channels do bufs[ch] = ARDOUR.DSP.DspShm (block) end
		local pos = 0
		while pos < frames do
			local n = math.min (block, frames - pos)
			local data = {}
			for ch = 1, channels do
				if rd:read (bufs[ch]:to_float (0), offset + pos, n, ch - 1) ~= n then
					f:close ()
					os.remove (path)
					return false
				end
				data[ch] = bufs[ch]:to_float (0):array ()
			end
			local t, k = {}, 1
			for i = 1, n do
				for ch = 1, channels do t[k] = data[ch][i]; k = k + 1 end
			end
			f:write (string.pack ("<" .. string.rep ("f", n * channels), table.unpack (t)))
			pos = pos + n
		end
		f:close ()
		return true
	end

	local function safe (name)
		return (string.gsub (name, "[^%w%-_]", "_"))
	end

	local function exists (path)
		local f = io.open (path, "rb")
		if f then f:close () end
		return f ~= nil
	end

	-- separate one clip through 'stemtok send'; returns {name = path} or nil and a message
	local function separate (c, folder, made)
		local base = safe (c.region:name ())
		local k = 1
		while exists (folder .. "/" .. base .. "-" .. k .. ".wav") or exists (folder .. "/" .. base .. "-" .. k .. "-other.wav")
			or exists (folder .. "/" .. base .. "-" .. k .. "-instrumental.wav") do
			k = k + 1
		end
		base = base .. "-" .. k
		local input = folder .. "/" .. base .. ".wav"
		if not write_wav (input, c) then
			return nil, "could not read the audio of region " .. c.region:name ()
		end
		local extra = operation == "instrumental" and " --karaoke" or ""
		local ok, line = run (command .. " send " .. quote (input) .. " --out " .. quote (folder)
			.. " --mode " .. quote (mode) .. " --quiet" .. extra)
		os.remove (input)
		if not ok then
			os.remove (folder .. "/" .. base) -- what send may have begun (only if it is empty)
			if string.find (line, "'frames'", 1, true) then
				line = line .. " (longer than the bridge takes: see 'stemtok bridge --max-minutes')"
			end
			return nil, c.region:name () .. ": " .. line
		end
		local names = operation == "instrumental" and { "instrumental" } or STEMS
		local files = {}
		for _, name in ipairs (names) do
			local from = folder .. "/" .. base .. "/" .. name .. ".wav"
			local to = folder .. "/" .. base .. "-" .. name .. ".wav"
			os.rename (from, to)
			files[name] = to
			made[#made + 1] = to
		end
		os.remove (folder .. "/" .. base)
		return files
	end

	-- the editor's embed goes to the selected track, and Lua cannot select a track directly:
	-- walk the selection there with the editor's own actions
	local function select_only (track)
		Editor:access_action ("Editor", "select-topmost")
		for _ = 0, Session:get_routes ():size () + 1 do
			local routes = Editor:get_selection ().tracks:routelist ()
			if routes:size () == 1 and routes:front ():name () == track:name () then return true end
			Editor:access_action ("Editor", "select-next-route")
		end
		return false
	end

	-- where new audio goes: one region of `path` on `track` at sample `at`
	local placements = {}
	local function place (track, path, at, name)
		if gui then
			if not select_only (track) then
				print ("stemtok: could not select track " .. track:name () .. " for " .. path)
				return
			end
			local files = C.StringVector ()
			files:push_back (path)
			local pos = Temporal.timepos_t (at)
			Editor:do_embed (files, Editing.ImportDistinctFiles, Editing.ImportToTrack, pos, ARDOUR.PluginInfo (), track)
			local regions = track:playlist ():region_list () -- name the new region like the track
			for r in regions:iter () do
				if r:position ():samples () == at and r:name () ~= name then
					pcall (function () r:set_name (name) end)
				end
			end
		else
			placements[#placements + 1] = " --region " .. quote (track:name ()) .. " " .. quote (path)
				.. " " .. at .. " " .. quote (name)
		end
	end

	-- headless: Lua cannot import, so the saved session gets the regions while it is closed
	local function place_headless ()
		if gui or #placements == 0 then return true end
		Session:save_state ("", false, false, false, false, false)
		local dir, snap = Session:path (), Session:snap_name ()
		local file = ARDOUR.LuaAPI.build_filename (dir, snap .. ".ardour")
		close_session ()
		local ok, line = run (command .. " daw ardour-place " .. quote (file) .. table.concat (placements))
		load_session (dir, snap)
		return ok, line
	end

	local function apply (c, files)
		local name = c.region:name ()
		if operation == "instrumental" then
			local playlist = c.track:playlist ()
			playlist:to_stateful ():clear_changes ()
			playlist:remove_region (c.region)
			Session:add_stateful_diff_command (playlist:to_statefuldestructible ())
			place (c.track, files.instrumental, c.from, name .. " instrumental")
			return
		end
		local order = c.track:presentation_info_ptr ():order ()
		local channels = c.region:to_audioregion ():to_readable ():n_channels ()
		for k, stem in ipairs (STEMS) do
			local tl = Session:new_audio_track (channels, 2, nil, 1, name .. " " .. stem, order + k,
				ARDOUR.TrackMode.Normal, true)
			place (tl:front (), files[stem], c.from, name .. " " .. stem)
		end
		if mute then
			c.track:mute_control ():set_value (1, PBD.GroupControlDisposition.NoGroup)
			for _ = 1, 100 do -- the engine applies it in its next cycle; a save must see it
				if c.track:muted () then break end
				ARDOUR.LuaAPI.usleep (10000)
			end
		end
	end

	-- ------------------------------------------------------------------ the action
	if not io or not io.popen or not os.execute then
		say ("Ardour's Lua sandbox blocks running programs (io.popen, os.execute): turn off the "
			.. "preference 'Sandbox all Lua scripts' and run the action again", true)
		return
	end
	if operation ~= "stems" and operation ~= "instrumental" then
		say ("operation must be 'stems' or 'instrumental', not '" .. operation .. "'", true)
		return
	end
	local clips = gui and selected_clips () or named_clips ()
	if operation == "instrumental" then
		local whole = {}
		for _, c in ipairs (clips) do
			whole[#whole + 1] = clip (c.region, c.track)
		end
		clips = whole
	end
	if #clips == 0 then
		say ("select audio regions, a time range on tracks, or tracks first", true)
		return
	end
	local ok, line = run (command .. " bridge --status")
	if not ok then
		say ("the stemtok bridge is " .. line, true)
		return
	end

	local folder = ARDOUR.LuaAPI.build_filename (Session:path (), "stemtok")
	os.execute ("mkdir -p " .. quote (folder))
	local progress = gui and LuaDialog.ProgressWindow ("stemtok", true) or nil
	local results, made = {}, {}
	for i, c in ipairs (clips) do
		local what = c.region:name () .. " (" .. i .. "/" .. #clips .. ")"
		if progress and progress:progress ((i - 1) / #clips, "separating " .. what) then
			line = "cancelled"
			results = nil
			break
		end
		print ("stemtok: separating " .. what)
		local files, err = separate (c, folder, made)
		if not files then
			line, results = err, nil
			break
		end
		results[i] = files
	end
	if progress then progress:done () end
	if not results then
		for _, path in ipairs (made) do os.remove (path) end
		os.remove (folder) -- only if nothing else is in it
		say ("nothing was changed: " .. line, line ~= "cancelled")
		return
	end

	Session:begin_reversible_command ("stemtok: " .. operation)
	for i, c in ipairs (clips) do
		apply (c, results[i])
	end
	if not Session:abort_empty_reversible_command () then
		Session:commit_reversible_command (nil)
	end
	local count = #clips
	clips, results = nil, nil -- no Ardour object may outlive the session that place_headless closes
	collectgarbage ()
	collectgarbage ()
	ok, line = place_headless ()
	if not ok then
		say ("the stems are in " .. folder .. " but could not be placed: " .. line, true)
		return
	end
	local n = operation == "instrumental" and "instrumental" or "four stems"
	print ("stemtok: " .. count .. " region(s) done, " .. n .. " each, files in " .. folder)
end end
