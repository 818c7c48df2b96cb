// The agenda view (filled below).
