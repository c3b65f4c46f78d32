"""The upload form: the page's plain, JavaScript-free path, protected by CSRF."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, RadioField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length


class UploadForm(FlaskForm):
    """A file and the source its contacts come from."""

    file = FileField("File", validators=[FileRequired("Choose a file to import.")])
    source = StringField(
        "Source",
        validators=[DataRequired("Say where these contacts come from."), Length(max=100)],
        description="Where these contacts come from, e.g. “trade fair 2026”. "
        "An email is stored once per source.",
    )
    useResumable = BooleanField("Resumable transfer to storage")  # noqa: N815 - the API's name
    mode = RadioField(
        "Contacts the source already has",
        choices=[
            SelectChoice("skip", "Leave them as they are"),
            SelectChoice("fill", "Fill in their empty fields"),
            SelectChoice("update", "Update them with the file's values"),
        ],
        default="skip",
        description="A contact is the same contact when its email is; a blank cell never blanks a field.",
    )
